-- One craft node in Lua as its own process, driven by a spec through files
-- (spec/support/procs.lua; the protocol is py_node.py's, which documents it):
--
--     lua5.4 spec/support/lua_node.lua ID PEERS DATA_DIR CTL_DIR [key=value ...]
--
-- Run from the repository's root with LUA_PATH / LUA_CPATH pointing at ./lua_modules (as
-- spec/helper.lua does for busted), under lua5.4 or luajit. The state machine is
-- spec/support.lua's kv(), the one the Python nodes of py_node.py implement too.
local raft = require "raft"
local support = require "spec.support"

local id, peers_arg, data_dir, ctl = tonumber(arg[1]), arg[2], arg[3], arg[4]
local peers = {}
for k, v in peers_arg:gmatch("(%d+)=([^,]+)") do peers[tonumber(k)] = v end
local o = {
    id = id, address = peers[id], data_dir = data_dir, peers = peers,
    heartbeat_ms = 50, election_timeout_ms = 500, fsync = false, timeout_ms = 5000,
    log_level = "warn", segment_size = 1048576,
}
for i = 5, #arg do
    local k, v = arg[i]:match("^([%w_]+)=(.*)$")
    if k == "tls_dir" then -- certificates of tests/tls/make-certs.sh
        o.security = raft.tls{ cert = ("%s/server-%d.pem"):format(v, id),
            key = ("%s/server-%d.key"):format(v, id), ca = v .. "/ca.pem" }
    elseif k == "secret_file" then
        o.security = raft.secret{ file = v }
    elseif v == "true" or v == "false" then o[k] = v == "true" else o[k] = tonumber(v) end
end
local fsm = support.kv()
o.fsm = fsm
local installed = 0
o.on = { snapshot = function(_, inst) if inst then installed = installed + 1 end end }
local node = assert(raft.node(o))
local session, opening = nil, false

local function dump()
    local parts = {}
    for k, v in pairs(fsm.data()) do parts[#parts + 1] = k .. "=" .. v .. "\n" end
    table.sort(parts)
    return table.concat(parts)
end

local function write_atomic(path, text)
    local f = assert(io.open(path .. ".tmp", "w"))
    f:write(text)
    f:close()
    assert(os.rename(path .. ".tmp", path))
end

local function pid()
    local f = io.open("/proc/self/stat")
    local p = f and f:read("*l"):match("^(%d+)")
    if f then f:close() end
    return p or "?"
end
write_atomic(ctl .. "/ready", pid())

local function answer(n)
    return function(value, err)
        if value == nil and err ~= nil then
            write_atomic(("%s/resp.%d"):format(ctl, n), "err\n" .. tostring(err))
        else
            write_atomic(("%s/resp.%d"):format(ctl, n), "ok\n" .. tostring(value or ""))
        end
    end
end

local next_req = 1
local function poll()
    while true do
        local path = ("%s/req.%d"):format(ctl, next_req)
        local f = io.open(path)
        if not f then break end
        local text = f:read("*a")
        f:close()
        local n = next_req
        next_req = next_req + 1
        local op, a = text:match("^([^\n]*)\n?(.*)$")
        local reply = answer(n)
        if op == "apply" then
            node:propose(a, reply)
        elseif op == "state" then
            node:read(dump, reply)
        elseif op == "stale" then
            reply(dump())
        elseif op == "status" then
            local s = node:status()
            reply(("%s %d %d %d"):format(s.role, s.leader, s.applied, s.commit))
        elseif op == "transfer" then
            node:transfer_leadership(tonumber(a), function(ok, err) reply(ok and "" or nil, err) end)
        elseif op == "sapply" then
            raft.spawn(function()
                while opening do raft.sleep(5) end
                if not session then
                    opening = true
                    local s, err = node:session()
                    opening = false
                    if not s then return reply(nil, err) end
                    session = s
                end
                reply(session:apply(a))
            end)
        elseif op == "digest" then
            local s = node:status()
            reply(s.diverged and "diverged" or s.digest and (s.digest.index .. " " .. s.digest.digest) or "none")
        elseif op == "installed" then
            reply(tostring(installed))
        elseif op == "quit" then
            reply("")
            node:close()
            raft.stop()
            return
        else
            reply(nil, "unknown operation " .. tostring(op))
        end
    end
    raft.after(5, poll)
end
raft.after(0, poll)
raft.run()
io.stderr:write("lua_node: the loop ended\n") -- after quit; anything else is a bug worth seeing in the log
