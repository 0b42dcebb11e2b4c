/* Names and messages for error codes, message types and roles, all from the tables in craft.h
 * so they cannot drift apart. */
#include "craft.h"

const char *craft_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "success";
#define CRAFT__STRERROR_CASE(name, code, msg)                                                  \
    case code:                                                                                 \
        return msg;
        CRAFT_ERRNO_MAP(CRAFT__STRERROR_CASE)
#undef CRAFT__STRERROR_CASE
    default:
        return "unknown error";
    }
}

const char *craft_err_name(int rc)
{
    switch (rc) {
    case 0:
        return "0";
#define CRAFT__ERRNAME_CASE(name, code, msg)                                                   \
    case code:                                                                                 \
        return "CRAFT_E" #name;
        CRAFT_ERRNO_MAP(CRAFT__ERRNAME_CASE)
#undef CRAFT__ERRNAME_CASE
    default:
        return "CRAFT_E?";
    }
}

const char *craft_message_type_name(int type)
{
    switch (type) {
    case CRAFT_MSG_REQUEST_VOTE:
        return "RequestVote";
    case CRAFT_MSG_REQUEST_VOTE_RESULT:
        return "RequestVoteResult";
    case CRAFT_MSG_APPEND_ENTRIES:
        return "AppendEntries";
    case CRAFT_MSG_APPEND_ENTRIES_RESULT:
        return "AppendEntriesResult";
    case CRAFT_MSG_INSTALL_SNAPSHOT:
        return "InstallSnapshot";
    case CRAFT_MSG_INSTALL_SNAPSHOT_RESULT:
        return "InstallSnapshotResult";
    case CRAFT_MSG_TIMEOUT_NOW:
        return "TimeoutNow";
    default:
        return "Unknown";
    }
}

const char *craft_role_name(int role)
{
    switch (role) {
    case CRAFT_FOLLOWER:
        return "follower";
    case CRAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case CRAFT_CANDIDATE:
        return "candidate";
    case CRAFT_LEADER:
        return "leader";
    default:
        return "unknown";
    }
}
