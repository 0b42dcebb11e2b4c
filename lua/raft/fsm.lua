--- raft.fsm: what runs between the committed log and the user's state machine, the same in Lua
-- as in Python (python/craft/__init__.py, _Adapter) and byte for byte compatible with it
-- (docs/protocol.md, "The state machine's formats"):
--
--   * entries that start with craft's reserved bytes C1 63 are craft's: client-session
--     envelopes (docs/sessions.md) and state-digest entries; one this node cannot interpret
--     (another kind, another version, a session command on a node without sessions) stops the
--     node, loudly, instead of reaching the user's apply;
--   * the client-session table (sessions = true) in front of the user's apply;
--   * every snapshot starts with the state-machine envelope (C1 63 73 70, version, whether a
--     session table follows, the table), then the user's bytes; a snapshot without it, or with
--     a table this node does not expect (or without one it does), is refused;
--   * state digests (digest_interval > 0): every node hashes its state where a mark entry is
--     applied; the leader proposes its digest right after, and a node whose own digest differs
--     raises "diverged" and stops applying.
--
-- An error raised by the user's apply is a result like any other (it goes back to the proposer
-- as "error\0<message>", and a session records it); the node stops only where this module
-- raises a table {raft_fatal = code, message = text}, which lua/src/node.c turns into a stop.
local core = require "raft.core"

local M = {}

local SESSION_NONE, SESSION_REGISTERED, SESSION_APPLY, SESSION_DUPLICATE = 0, 1, 2, 3
local SESSION_UNREGISTERED = 6
local REFUSALS = {
    [4] = "the session expired or was evicted: open a new one; whether the command was applied cannot be known",
    [5] = "the command is older than what the session remembers: its outcome cannot be known",
    [7] = "a malformed session envelope",
}
-- Digests kept for comparison: marks come one per interval, values right after them.
local KEEP_DIGESTS = 16

local function hex(s)
    return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
M.hex = hex

-- Stops the node at the entry at index: lua/src/node.c turns the table into the stop.
local function fatal(code, message, index)
    error({ raft_fatal = code, message = message, index = index }, 0)
end

local function error_text(e)
    if type(e) == "string" or type(e) == "number" then return tostring(e) end
    local mt = getmetatable(e)
    if mt and mt.__tostring then return tostring(e) end
    return ("(error object is a %s value)"):format(type(e))
end

--- M.new(user, o): user = {apply, apply_batch, snapshot, restore, digest}; o = {sessions = bool,
-- session_options = {}, digest_interval = n, propose = fn(payload), is_leader = fn(),
-- on_diverged = fn(index, leader_hex, our_hex), log = fn(level, line), id = n}. Returns the
-- adapter: apply, snapshot and restore for the runtime (snapshot and restore nil when the user
-- gave none), and its state for status().
function M.new(user, o)
    local self = {
        sessions = o.sessions and core.sessions(o.session_options) or nil,
        interval = o.digest_interval or 0,
        digests = {},          -- mark index -> our digest
        order = {},            -- mark indexes, oldest first
        since_mark = 0,        -- user commands applied since the last mark
        mark_pending = false,
        diverged = nil,        -- {index =, leader =, ours =} once the state is known wrong
        last_digest = nil,     -- {index =, digest = hex}
    }
    local user_apply, user_snapshot, user_restore = user.apply, user.snapshot, user.restore

    local function apply_user(command, index)
        local ok, r = pcall(user_apply, command, index)
        if not ok then
            return nil, error_text(r)
        end
        if r == nil or type(r) == "string" then return r or "" end
        if type(r) == "number" then return tostring(r) end
        return nil, ("apply returned a %s: return a string or nil"):format(type(r))
    end

    -- The state's digest now: the snapshot envelope's head with the session table, then the
    -- user's digest() bytes, or else the user's snapshot bytes (docs/protocol.md).
    local function digest_now()
        local chunks = { core.snapshot_header(self.sessions and self.sessions:encode() or nil) }
        local part
        if user.digest then
            part = user.digest()
        elseif user_snapshot then
            part = user_snapshot()
        end
        if type(part) == "string" then
            chunks[#chunks + 1] = part
        elseif type(part) == "table" then
            for i = 1, #part do chunks[#chunks + 1] = part[i] end
        elseif part ~= nil then
            error(("digest/snapshot returned a %s: return a string or a table of strings"):format(type(part)), 0)
        end
        return core.sha256(chunks)
    end

    local function keep(index, d)
        self.digests[index] = d
        self.order[#self.order + 1] = index
        if #self.order > KEEP_DIGESTS then
            self.digests[table.remove(self.order, 1)] = nil
        end
        self.last_digest = { index = index, digest = hex(d) }
    end

    local function on_digest_entry(command, index)
        local kind, at, theirs = core.digest_parse(command)
        if kind == nil then
            fatal(theirs or "EMALFORMED", ("entry %d is a state-digest entry this node cannot read (%s): it stops rather than guess"):format(index, tostring(at)), index)
        end
        if self.interval <= 0 then
            return "" -- digests are off here: the entry means nothing to this node
        end
        if kind == "mark" then
            self.since_mark = 0
            self.mark_pending = false
            local d = digest_now()
            keep(index, d)
            if o.is_leader() then
                o.propose(core.digest_value(index, d))
            end
            return ""
        end
        local ours = self.digests[at]
        if ours ~= nil and ours ~= theirs then
            self.diverged = { index = at, leader = hex(theirs), ours = hex(ours) }
            local line = ("raft: node %d: its state machine diverged: at index %d the leader's digest is %s and ours is %s; the node stops applying (a nondeterministic apply, or state changed outside apply)")
                :format(o.id, at, self.diverged.leader, self.diverged.ours)
            o.log("error", line)
            o.on_diverged(at, self.diverged.leader, self.diverged.ours)
            fatal("EVIOLATION", line, index)
        end
        return ""
    end

    local function maybe_mark()
        self.since_mark = self.since_mark + 1
        if self.interval > 0 and not self.mark_pending and self.since_mark >= self.interval
                and o.is_leader() then
            self.mark_pending = true
            o.propose(core.digest_mark(), function() self.mark_pending = false end)
        end
    end

    local function check_diverged(index)
        if self.diverged then
            fatal("EVIOLATION", "the state machine diverged at index " .. self.diverged.index, index)
        end
    end

    -- An entry that starts with craft's reserved bytes: a digest entry is handled here (its
    -- result, a string); a session envelope goes on to the session table (nil); anything else
    -- stops the node.
    local function craft_entry(command, index)
        local tag = command:sub(3, 4)
        if tag == "dg" then
            return on_digest_entry(command, index)
        elseif tag ~= "sn" then
            fatal("EMALFORMED", ("entry %d starts with craft's reserved bytes C1 63 but is no kind of entry this node knows (%s...): a newer node or another program wrote it; the node stops rather than guess")
                :format(index, hex(command:sub(1, 6))), index)
        elseif not self.sessions then
            fatal("EMALFORMED", ("entry %d is a client-session command, but this node runs without sessions (sessions = false): every node of a cluster must make the same choice")
                :format(index), index)
        end
        return nil
    end

    local function reserved(command)
        return command:byte(1) == 0xC1 and command:byte(2) == 0x63
    end

    function self.apply(command, index)
        check_diverged(index)
        if reserved(command) then
            local r = craft_entry(command, index)
            if r ~= nil then return r end
        end
        local result, err
        local t = self.sessions
        if t == nil then
            result, err = apply_user(command, index)
        else
            local kind, client, seq, bytes = t:apply(index, command)
            if kind == SESSION_NONE then
                result, err = apply_user(bytes or command, index)
            elseif kind == SESSION_APPLY then
                result, err = apply_user(bytes, index)
                if err then
                    t:record(client, seq, "\1error\0" .. err)
                else
                    t:record(client, seq, "\0" .. result)
                end
            elseif kind == SESSION_DUPLICATE then
                if bytes:byte(1) == 1 then
                    maybe_mark()
                    error(bytes:sub(2), 0)
                end
                result = bytes:sub(2)
            elseif kind == SESSION_REGISTERED or kind == SESSION_UNREGISTERED then
                result = ""
            else
                maybe_mark()
                error("craft.SessionError\0" .. (REFUSALS[kind] or "refused"), 0)
            end
        end
        maybe_mark()
        if err then
            error("error\0" .. err, 0)
        end
        return result
    end

    -- The user's apply_batch(commands, first_index): the runtime hands lua/src/node.c every
    -- committed command that is ready, and self.apply_batch gives the user's function the runs
    -- of plain commands at consecutive indexes; craft's own entries and session commands are
    -- handled between the runs, in log order, exactly as self.apply handles them (so a batch
    -- boundary, which differs from node to node, changes nothing in the state). A result the
    -- runtime carries is a string, or {message} for a command that failed.
    local user_batch = user.apply_batch
    if user_batch then
        local function batch_result(r, index)
            if type(r) == "string" then return r end
            if type(r) == "number" then return tostring(r) end
            if type(r) == "table" and r.error ~= nil then
                return { "error\0" .. error_text(r.error) }
            end
            return { ("error\0apply_batch returned a %s for the command at index %d: return a string (or a number), or {error = message} for a command that failed")
                :format(type(r), index) }
        end

        local function apply_run(run, first)
            local n = #run
            local last = first + n - 1
            local ok, rs = pcall(user_batch, run, first)
            if not ok then
                fatal("EINVAL", ("apply_batch raised an error (commands %d..%d): %s; a raised error cannot say which commands took effect, so the node stops. Put {error = message} in the list, in the place of the command that failed")
                    :format(first, last, error_text(rs)), first)
            end
            if type(rs) ~= "table" then
                fatal("EINVAL", ("apply_batch returned a %s for commands %d..%d: it must return a table of one result per command; the node stops")
                    :format(type(rs), first, last), first)
            end
            local out = {}
            for k = 1, n do
                if rs[k] == nil then
                    fatal("EINVAL", ("apply_batch returned no result for the command at index %d (commands %d..%d): it must return one result per command, \"\" for none; the node stops")
                        :format(first + k - 1, first, last), first)
                end
                out[k] = batch_result(rs[k], first + k - 1)
            end
            if rs[n + 1] ~= nil then
                fatal("EINVAL", ("apply_batch returned more results than the %d commands %d..%d; the node stops")
                    :format(n, first, last), first)
            end
            return out
        end

        -- A session command's outcome, as self.apply gives it (a run of one for the user).
        local function session_outcome(kind, client, seq, bytes, index)
            local t = self.sessions
            if kind == SESSION_APPLY then
                local r = apply_run({ bytes }, index)[1]
                t:record(client, seq, type(r) == "table" and "\1" .. r[1] or "\0" .. r)
                return r
            elseif kind == SESSION_DUPLICATE then
                if bytes:byte(1) == 1 then return { bytes:sub(2) } end
                return bytes:sub(2)
            elseif kind == SESSION_REGISTERED or kind == SESSION_UNREGISTERED then
                return ""
            end
            return { "craft.SessionError\0" .. (REFUSALS[kind] or "refused") }
        end

        function self.apply_batch(commands, indexes)
            local out, run, first = {}, {}, 0
            local function flush()
                if #run > 0 then
                    local rs = apply_run(run, first)
                    for k = 1, #rs do out[#out + 1] = rs[k] end
                    run = {}
                end
            end
            local t = self.sessions
            for k = 1, #commands do
                local command, index = commands[k], indexes[k]
                check_diverged(index)
                local r
                if reserved(command) then
                    flush()
                    r = craft_entry(command, index)
                end
                if r ~= nil then
                    out[#out + 1] = r -- a digest entry: no mark counted
                else
                    local kind, client, seq, bytes = SESSION_NONE, nil, nil, nil
                    if t ~= nil then kind, client, seq, bytes = t:apply(index, command) end
                    if kind == SESSION_NONE then
                        if #run > 0 and index ~= first + #run then flush() end
                        if #run == 0 then first = index end
                        run[#run + 1] = bytes or command
                    else
                        flush()
                        out[#out + 1] = session_outcome(kind, client, seq, bytes, index)
                    end
                    maybe_mark()
                end
            end
            flush()
            return out
        end
    end

    if user_snapshot then
        function self.snapshot()
            local out = { core.snapshot_header(self.sessions and self.sessions:encode() or nil) }
            local part = user_snapshot()
            if type(part) == "string" then
                out[2] = part
            elseif type(part) == "table" then
                for i = 1, #part do
                    if type(part[i]) ~= "string" then
                        error(("snapshot: chunk %d is a %s: return a string or a table of strings"):format(i, type(part[i])), 0)
                    end
                    out[#out + 1] = part[i]
                end
            elseif part ~= nil then
                error(("snapshot returned a %s: return a string or a table of strings"):format(type(part)), 0)
            end
            return out
        end

        function self.restore(s)
            local has, tbl, offset = core.snapshot_parse(s)
            if has == nil then
                error(("raft: node %d refuses the snapshot: %s"):format(o.id, tbl), 0)
            end
            if has and not self.sessions then
                error(("raft: node %d refuses the snapshot: it carries a client-session table, but this node runs without sessions (sessions = false); every node of a cluster must make the same choice"):format(o.id), 0)
            elseif not has and self.sessions then
                error(("raft: node %d refuses the snapshot: it carries no client-session table, but this node runs with sessions; every node of a cluster must make the same choice"):format(o.id), 0)
            end
            if has then
                local fresh = core.sessions(o.session_options)
                local ok, msg = fresh:decode(tbl)
                if not ok then
                    error(("raft: node %d refuses the snapshot: %s"):format(o.id, msg), 0)
                end
                self.sessions = fresh
            end
            self.digests, self.order, self.since_mark = {}, {}, 0
            user_restore(offset == 1 and s or s:sub(offset))
        end
    end
    return self
end

return M
