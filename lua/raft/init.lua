--- raft: Raft consensus for Lua. Write a state machine in Lua; craft replicates it.
--
--     local raft = require "raft"
--     local value = 0
--     local node = assert(raft.node{
--         id = 1, address = "127.0.0.1:7001", data_dir = "/var/lib/counter/1",
--         peers = { [1] = "127.0.0.1:7001", [2] = "127.0.0.1:7002", [3] = "127.0.0.1:7003" },
--         apply = function(command, index) value = value + tonumber(command); return tostring(value) end,
--         snapshot = function() return tostring(value) end,
--         restore = function(data) value = tonumber(data) end,
--     })
--     print(node:apply("5"))        -- drives the loop until committed and applied here
--     raft.run()                    -- or raft.poll(ms) from another event loop
--
-- The loop runs in the caller's thread. Errors follow Lua's conventions: nil, message, code
-- for what can go wrong at run time (the message starts with a stable prefix such as
-- "not leader"), error() for programming mistakes. docs/lua.md is the guide.

local core = require "raft.core"
local store = require "raft.store"
local fsm_adapter = require "raft.fsm"

local raft = {
    _VERSION = "raft " .. core.craft_version,
    craft_version = core.craft_version,
    codes = core.codes,
}

local unpack = table.unpack or unpack
local function pack(...)
    return { n = select("#", ...), ... }
end

-- ---- errors -----------------------------------------------------------------------------------

local PREFIX = {
    ENOTLEADER = "not leader",
    ETIMEDOUT = "timeout",
    ESHUTDOWN = "closed",
    EDROPPED = "dropped",
    ENOCONN = "no connection",
    EBUSY = "busy",
    EAPPLY = "apply failed",
    ETOOBIG = "too large",
}

local HINT = {
    ETIMEDOUT = "no answer in time; the command may or may not have been applied",
    ESHUTDOWN = "the node is closed",
    EDROPPED = "the proposal was lost to a leader change and was not applied; it is safe to retry",
    ENOCONN = "the connection to the leader dropped while it handled the request; the outcome is unknown",
    EBUSY = "a leadership transfer or membership change is in progress; retry shortly",
    ETOOBIG = "the command is larger than one frame can carry (max_frame): split it, or raise max_frame on every node",
}

--- The error values of a failed request: message, code, leader id, leader address.
local function failure(status, data, leader_id, leader_address)
    local text, code = core.strerror(status)
    local msg
    if code == "ENOTLEADER" then
        if leader_id and leader_id ~= 0 then
            local where = (leader_address and leader_address ~= "") and (" at " .. leader_address) or ""
            msg = ("not leader: the leader is node %d%s"):format(leader_id, where)
        else
            msg = "not leader: no leader is known yet; retry once one is elected"
            leader_id, leader_address = nil, nil
        end
        return msg, code, leader_id, leader_address
    elseif code == "EAPPLY" then
        -- "<name>\0<message>" (docs/protocol.md): the error's name, then its message.
        local name, message = (data or ""):match("^([^%z]*)%z(.*)$")
        if name == "craft.SessionError" then
            return "session: " .. message, "ESESSION"
        end
        return "apply failed: " .. (message or data or ""), code
    end
    local prefix = PREFIX[code] or text
    msg = prefix .. ": " .. (HINT[code] or text)
    if data and data ~= "" then
        msg = msg .. " (" .. data .. ")"
    end
    return msg, code
end
raft._failure = failure

local function argerror(n, fname, msg, level)
    error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), (level or 2) + 1)
end

-- ---- the loop -------------------------------------------------------------------------------

local spawned = setmetatable({}, { __mode = "k" })

local function resume(co, ...)
    local ok, err = coroutine.resume(co, ...)
    if not ok then
        spawned[co] = nil
        error(debug.traceback(co, tostring(err)), 0)
    end
    if coroutine.status(co) == "dead" then
        spawned[co] = nil
    end
end

local function current_spawned()
    local co = coroutine.running()
    if co and spawned[co] then
        return co
    end
    return nil
end

-- The callback style of a call written in the coroutine style: runs fn() in a raft.spawn
-- coroutine and hands its values to cb, never before the caller got its true back (a call
-- that needs no waiting would otherwise call cb before returning, unlike every other request).
local function in_coroutine(cb, fn)
    local returned = false
    raft.spawn(function()
        local r = pack(fn())
        if returned then
            cb(unpack(r, 1, r.n))
        else
            core.after(0, function() cb(unpack(r, 1, r.n)) end)
        end
    end)
    returned = true
    return true
end

--- Runs fn(...) in a coroutine driven by the loop: inside it, node:apply, node:read, the
-- membership calls, raft.sleep and raft.wait yield until done instead of blocking.
function raft.spawn(fn, ...)
    if type(fn) ~= "function" then
        argerror(1, "spawn", "function expected, got " .. type(fn))
    end
    local co = coroutine.create(fn)
    spawned[co] = true
    resume(co, ...)
    return co
end

--- Runs the loop: until raft.stop() is called, every node is closed, or timeout_ms passed.
-- The first SIGINT (Ctrl-C) while it runs closes every node and makes it return nil,
-- "interrupted: ...", "EINTR".
function raft.run(timeout_ms)
    return core.run("default", timeout_ms)
end

--- Runs what is ready and returns; with timeout_ms > 0, waits up to that long for something
-- to happen first. For embedding in another event loop (an OpenResty timer, a game loop).
function raft.poll(timeout_ms)
    if timeout_ms and timeout_ms > 0 then
        return core.run("once", timeout_ms)
    end
    return core.run("nowait")
end

--- Makes raft.run() return (from a callback).
raft.stop = core.stop

--- raft.on_error(fn): fn(message_with_traceback) gets errors raised by callbacks (request
-- callbacks, events, coroutines started with raft.spawn). Without a handler such an error
-- stops the loop and raft.run / raft.poll (or the blocking call that drove the loop) raises it.
raft.on_error = core.on_error

--- A monotonic clock in milliseconds.
raft.now = core.now

--- The same clock in milliseconds with a fraction (nanosecond resolution), for latencies.
raft.hrtime = core.hrtime

--- The loop's backend fd and timeout (ms, -1: none), for embedding: call raft.poll(0) when
-- the fd is readable or the timeout has passed.
raft.backend = core.backend

--- Calls fn() once on the loop after ms milliseconds.
function raft.after(ms, fn)
    if type(fn) ~= "function" then
        argerror(2, "after", "function expected, got " .. type(fn))
    end
    core.after(ms, fn)
end

local function check_can_wait(fname)
    if core.in_loop() then
        error(("raft: %s cannot wait inside a callback: pass a callback function, or call it "
            .. "from a coroutine started with raft.spawn"):format(fname), 3)
    end
end

--- Lets ms milliseconds pass: yields in a raft.spawn coroutine, runs the loop otherwise.
function raft.sleep(ms)
    local co = current_spawned()
    if co then
        core.after(ms, function() resume(co) end)
        return coroutine.yield()
    end
    check_can_wait("raft.sleep")
    local deadline = core.now() + ms
    repeat
        core.run("default", math.max(0, deadline - core.now()))
    until core.now() >= deadline
end

--- Runs the loop until pred() returns a true value (checked every few milliseconds) or
-- timeout_ms passed: true, or nil, "timeout: ...", "ETIMEDOUT".
function raft.wait(pred, timeout_ms, what)
    timeout_ms = timeout_ms or 10000
    local deadline = core.now() + timeout_ms
    local co = current_spawned()
    if not co then
        check_can_wait("raft.wait")
    end
    while not pred() do
        local left = deadline - core.now()
        if left <= 0 then
            return nil, "timeout: " .. (what or "the condition did not hold") .. " within "
                .. timeout_ms .. " ms", "ETIMEDOUT"
        end
        if co then
            raft.sleep(math.min(left, 5))
        else
            core.run("once", math.min(left, 20))
        end
    end
    return true
end

-- ---- requests ---------------------------------------------------------------------------------

local OP = { PROPOSE = 1, READ = 2, READ_LEASE = 3, ADD = 4, PROMOTE = 5, REMOVE = 6, TRANSFER = 7,
    DEMOTE = 8, SNAPSHOT = 9 }

-- Submits a request. ok(index, data) shapes a success into the values to return; a failure
-- gives nil, message, code[, leader_id, leader_address]. With cb: cb(values...) later, and
-- true now. In a raft.spawn coroutine: yields until done. Elsewhere: drives the loop until
-- done. A request that could not be submitted returns nil, message, code at once.
-- When this node cannot reach a majority of the voters: the "no quorum: ..." message and
-- "ENOQUORUM", with the counts; else nil.
local function no_quorum(node)
    local c = node._c
    if not c:is_open() then return nil end
    local s = c:status()
    local voters, reachable, down = 0, 0, {}
    for _, p in ipairs(s.peers) do
        if p.role == "voter" then
            voters = voters + 1
            if p.connected then
                reachable = reachable + 1
            else
                down[#down + 1] = ("%d (%s)"):format(p.id, p.address)
            end
        end
    end
    local need = math.floor(voters / 2) + 1
    if voters == 0 or reachable >= need then return nil end
    return ("no quorum: node %d reaches %d of the %d voters (itself included) and a majority needs %d; unreachable: %s. Start them or repair the network; the outcome of a command sent meanwhile is unknown")
        :format(s.id, reachable, voters, need, table.concat(down, ", ")), "ENOQUORUM", reachable, voters
end

local function request(node, fname, op, payload, server, address, auto, timeout, cb, ok)
    local function shape(status, index, data, leader_id, leader_address)
        if status == 0 then
            return ok(index, data)
        end
        local msg, code, a, b = failure(status, data, leader_id, leader_address)
        if (code == "ETIMEDOUT" or code == "ENOTLEADER") and node._c:is_open()
                and node._c:status().removed then
            return nil, ("removed: node %d was removed from the cluster's configuration and serves nothing; stop it, or move its data directory aside and add it again from the leader (add_server)")
                :format(node._c:id()), "EREMOVED"
        end
        if code == "ETIMEDOUT" or (code == "ENOTLEADER" and a == nil) then
            local qmsg, qcode, reachable, voters = no_quorum(node)
            if qmsg then return nil, qmsg, qcode, reachable, voters end
        end
        return nil, msg, code, a, b
    end
    local c = node._c
    if not c:is_open() then
        return nil, "closed: the node is closed", "ESHUTDOWN"
    end
    -- The runtime may answer inside submit itself (a snapshot that is already there, a
    -- membership change refused on the spot): such an answer is kept until submit returned,
    -- then handed on, so that a callback never runs before its call returned and a coroutine
    -- is never resumed before it yielded.
    if cb then
        local early
        local sent, msg, code = c:submit(op, payload, server, address, auto, timeout,
            function(...)
                if early == nil then early = pack(shape(...)) return end
                cb(shape(...))
            end)
        if not sent then
            return nil, msg, code
        end
        if early then
            local r = early
            core.after(0, function() cb(unpack(r, 1, r.n)) end)
        end
        early = false
        return true
    end
    local co = current_spawned()
    if co then
        local early
        local sent, msg, code = c:submit(op, payload, server, address, auto, timeout,
            function(...)
                if early == nil then early = pack(shape(...)) return end
                resume(co, shape(...))
            end)
        if not sent then
            return nil, msg, code
        end
        if early then
            return unpack(early, 1, early.n)
        end
        early = false
        return coroutine.yield()
    end
    check_can_wait("node:" .. fname)
    local result
    local sent, msg, code = c:submit(op, payload, server, address, auto, timeout,
        function(...) result = pack(shape(...)) end)
    if not sent then
        return nil, msg, code
    end
    while not result do
        core.run("once")
    end
    return unpack(result, 1, result.n)
end

-- Trailing optional arguments: [opts] [callback], where opts is a table or a timeout in ms.
local function options(fname, first, a, b)
    local opts, cb = a, b
    if type(a) == "function" and b == nil then
        opts, cb = nil, a
    end
    if type(opts) == "number" then
        opts = { timeout_ms = opts }
    elseif opts ~= nil and type(opts) ~= "table" then
        argerror(first, fname, "options table or timeout in ms expected, got " .. type(opts), 3)
    end
    if cb ~= nil and type(cb) ~= "function" then
        argerror(first + 1, fname, "callback function expected, got " .. type(cb), 3)
    end
    opts = opts or {}
    if opts.timeout_ms ~= nil and (type(opts.timeout_ms) ~= "number" or opts.timeout_ms <= 0) then
        argerror(first, fname, "timeout_ms must be a number > 0", 3)
    end
    return opts, cb
end

-- ---- log stores -------------------------------------------------------------------------------

--- raft.memory_store(): a log store in memory, written in Lua (raft/store.lua): nothing
-- survives the process, but a node restarted with the same store keeps its log. For tests,
-- demos, and as the template of a log store of your own (raft.node{..., log_store = store}).
raft.memory_store = store.memory_store

-- ---- security (docs/security.md) -------------------------------------------------------------

local function check_string(fname, t, k, required)
    local v = t[k]
    if v == nil and not required then return end
    if type(v) ~= "string" then
        error(("raft.%s: %s must be a string (a file name)"):format(fname, k), 3)
    end
end

--- raft.tls{cert = "n1.pem", key = "n1.key", ca = "ca.pem", verify_id = true}: mutual TLS 1.3
-- with certificates (PEM files). ca may hold several CAs (the window of a rotation). With
-- verify_id (the default) a server's certificate must name the server id it claims: a
-- subjectAltName URI "craft:server:<id>", or a subject CN "craft-server-<id>".
function raft.tls(t)
    if type(t) ~= "table" then argerror(1, "tls", "table expected, got " .. type(t)) end
    for _, k in ipairs({ "cert", "key", "ca" }) do check_string("tls", t, k, true) end
    if t.verify_id ~= nil and type(t.verify_id) ~= "boolean" then
        error("raft.tls: verify_id must be a boolean", 2)
    end
    return { mode = "tls", cert = t.cert, key = t.key, ca = t.ca, verify_id = t.verify_id ~= false }
end

--- raft.secret{file = "cluster.secret"} or raft.secret{passphrase = "..."}: a cluster secret
-- (TLS 1.3 with a pre-shared key derived from it). accept_file / accept_passphrase: a second
-- secret accepted from others but not used to connect (the window of a rotation).
function raft.secret(t)
    if type(t) ~= "table" then argerror(1, "secret", "table expected, got " .. type(t)) end
    if (t.file == nil) == (t.passphrase == nil) then
        error("raft.secret: give one of file and passphrase", 2)
    end
    if t.accept_file ~= nil and t.accept_passphrase ~= nil then
        error("raft.secret: give at most one of accept_file and accept_passphrase", 2)
    end
    for _, k in ipairs({ "file", "passphrase", "accept_file", "accept_passphrase" }) do
        check_string("secret", t, k, false)
    end
    return { mode = "secret", file = t.file, passphrase = t.passphrase,
             accept_file = t.accept_file, accept_passphrase = t.accept_passphrase }
end

--- raft.generate_secret(path): a new random cluster secret in a new file (mode 0600). Returns
-- true, or nil, message, code (a file that exists is never overwritten).
raft.generate_secret = core.generate_secret

--- raft.check_security(settings, cluster_id): true, or nil, message, code when the settings
-- cannot work (a missing file, a key that does not match its certificate, a short secret).
raft.check_security = core.check_security

local function check_security(fname, sec)
    if sec == nil then return end
    if type(sec) ~= "table" or (sec.mode ~= "tls" and sec.mode ~= "secret" and sec.mode ~= "plaintext") then
        error(("raft.%s: security must be raft.tls{...}, raft.secret{...} or nil"):format(fname), 3)
    end
end

-- ---- nodes ------------------------------------------------------------------------------------

local function show_name(v)
    return type(v) == "string" and ("%q"):format(v) or tostring(v)
end

local Node = {}
Node.__index = Node
raft.Node = Node

-- The names of Python's events (craft.EventName), with the same arguments.
local EVENTS = { role = true, leader = true, membership = true, snapshot = true, stopped = true,
    snapshot_taken = true, snapshot_installed = true, snapshot_failed = true,
    follower_lagging = true, follower_caught_up = true, follower_log_lost = true,
    diverged = true, removed = true, peers_differ = true }

-- "unknown event "x"; events: ..." (every valid name, sorted).
local function unknown_event(name)
    local names = {}
    for n in pairs(EVENTS) do names[#names + 1] = n end
    table.sort(names)
    return ("unknown event %s; events: %s"):format(show_name(name), table.concat(names, ", "))
end
local LEVELS = { debug = 0, info = 1, warn = 2, warning = 2, error = 3 }
local KNOWN = {
    id = true, address = true, data_dir = true, peers = true, join = true, apply = true,
    apply_batch = true,
    snapshot = true, restore = true, fsm = true, log = true, log_level = true, on = true,
    cluster_id = true, heartbeat_ms = true, election_timeout_ms = true, pre_vote = true,
    check_quorum = true, snapshot_entries = true, snapshot_trailing = true, fsync = true,
    forward = true, max_frame = true, timeout_ms = true, seed = true, log_store = true,
    segment_size = true, sessions = true, session_options = true, digest_interval = true,
    digest = true, security = true, limits = true, metrics_address = true, lag_threshold = true,
}
local LIMITS = {
    max_pending = true, max_clients = true, max_clients_per_ip = true,
    client_idle_timeout_ms = true, max_client_requests = true, read_budget = true,
}

-- The WAL segment sizes a node accepts (segment_size): the store's minimum, and the largest size
-- it preallocates (docs/storage.md). Left out, the store's default: 64 MiB.
raft.SEGMENT_SIZE_MIN = 4096
raft.SEGMENT_SIZE_MAX = 1073741824

--- The smallest max_frame a node accepts.
raft.MAX_FRAME_MIN = 65536

--- raft.max_command([max_frame]): the largest command (bytes) a cluster whose nodes use this
-- max_frame (default 64 MiB) can replicate: one entry must fit in one frame. node:apply refuses
-- a larger one at once with nil, "too large: ...", "ETOOBIG".
function raft.max_command(max_frame)
    return core.max_command(max_frame)
end

-- Integer options: accepted range and what they mean.
local INT_OPTIONS = {
    heartbeat_ms = { 1, 60000, "milliseconds between heartbeats (the tick)" },
    election_timeout_ms = { 2, 3600000, "milliseconds, at least twice heartbeat_ms" },
    snapshot_entries = { 0, 2 ^ 53, "entries between snapshots (0: never by count)" },
    snapshot_trailing = { 0, 2 ^ 53, "entries kept after a snapshot" },
    timeout_ms = { 1, 86400000, "milliseconds, the default timeout of requests" },
    cluster_id = { 0, 2 ^ 53, "(0: derived from the bootstrap configuration)" },
    seed = { 0, 2 ^ 53, "(0: from the id and the clock)" },
    lag_threshold = { 0, 2 ^ 53, "entries a follower may fall behind the leader before \"follower_lagging\" (0: never)" },
}

-- "host:port" with a numeric IPv4 address, localhost or [IPv6], as the runtime parses it.
local function check_address(bad, what, a, port_zero)
    local host, port
    if type(a) == "string" and #a < 64 then
        host, port = a:match("^(%[[%x:.]+%]):(%d+)$")
        if not host then
            host, port = a:match("^([%d.]+):(%d+)$")
            if host then
                local parts = { host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
                if #parts ~= 4 then host = nil end
                for _, p in ipairs(parts) do if tonumber(p) > 255 then host = nil end end
            else
                host, port = a:match("^(localhost):(%d+)$")
            end
        end
    end
    if not host or tonumber(port) > 65535 then
        bad(("%s must be \"host:port\" with a numeric IPv4 address, localhost or [IPv6] (names are not resolved) and a port from 0 to 65535, shorter than 64 bytes; not %s")
            :format(what, type(a) == "string" and ("%q"):format(a) or tostring(a)))
    end
    if not port_zero and tonumber(port) == 0 then
        bad(("%s %q has port 0: a peer's address needs its real port (port 0 only lets this node's own address pick one)"):format(what, a))
    end
end

-- A value as an error message shows it: strings quoted, so that "1" is not taken for 1.
local function show(v)
    if type(v) == "string" then return ("the string %q"):format(v) end
    return tostring(v)
end

local function is_id(v)
    return type(v) == "number" and v > 0 and v == math.floor(v)
end

--- raft.node{...}: starts a node on this Lua state's loop. Returns the node, or nil, message,
-- code when it could not start (a locked data directory, an address in use, corrupt data).
function raft.node(o)
    if type(o) ~= "table" then
        argerror(1, "node", "options table expected, got " .. type(o))
    end
    for k in pairs(o) do
        if not KNOWN[k] then
            local names = {}
            for name in pairs(KNOWN) do names[#names + 1] = name end
            table.sort(names)
            error(("raft.node: unknown option %q (known: %s)"):format(tostring(k), table.concat(names, ", ")), 2)
        end
    end
    local function bad(msg) error("raft.node: " .. msg, 3) end
    if not is_id(o.id) then bad(("id must be a positive integer, not %s"):format(show(o.id))) end
    check_address(bad, "address", o.address, true)
    if o.metrics_address ~= nil then
        check_address(bad, "metrics_address (where GET /metrics is served)", o.metrics_address, true)
    end
    if o.log_store ~= nil then
        local st = o.log_store
        if type(st) ~= "table" and type(st) ~= "userdata" then
            bad("log_store must be a table of hook functions (see raft.memory_store and docs/lua.md)")
        end
        for _, name in ipairs(store.REQUIRED) do
            if type(st[name]) ~= "function" then
                bad(("log_store has no method %s() (see raft.memory_store and docs/lua.md)"):format(name))
            end
        end
        if o.data_dir ~= nil and type(o.data_dir) ~= "string" then bad("data_dir must be a string") end
    elseif type(o.data_dir) ~= "string" then
        bad("data_dir must be a string: the durable store's directory (or give log_store)")
    end
    if o.peers == nil and not o.join then
        bad("give peers = {[id] = \"host:port\", ...} for a new cluster (this node included), or join = true for a node a leader will add")
    end
    if o.peers ~= nil and o.join then bad("peers and join = true exclude each other") end
    if o.peers ~= nil then
        if type(o.peers) ~= "table" then bad("peers must be a table {[id] = \"host:port\"}") end
        local seen = {}
        for id, addr in pairs(o.peers) do
            if not is_id(id) then
                bad(("peers: ids must be positive integers, not %s"):format(show(id)))
            end
            check_address(bad, ("peers[%d]"):format(id), addr, id == o.id)
            if seen[addr] and not addr:match(":0$") then
                bad(("peers %d and %d have the same address %q: every server needs its own"):format(seen[addr], id, addr))
            end
            seen[addr] = id
        end
        if o.peers[o.id] == nil then bad(("peers must include this node (%d)"):format(o.id)) end
    end
    local fsm = o.fsm
    if fsm ~= nil and type(fsm) ~= "table" then bad("fsm must be a table {apply=, snapshot=, restore=}") end
    local apply = o.apply or (fsm and fsm.apply)
    local apply_batch = o.apply_batch or (fsm and fsm.apply_batch)
    if apply_batch ~= nil and type(apply_batch) ~= "function" then
        bad("apply_batch must be a function(commands, first_index) returning one result per command")
    end
    local snapshot = o.snapshot or (fsm and fsm.snapshot)
    local restore = o.restore or (fsm and fsm.restore)
    local digest = o.digest or (fsm and fsm.digest)
    if digest ~= nil and type(digest) ~= "function" then bad("digest must be a function() returning a string or a table of strings") end
    if o.sessions ~= nil and type(o.sessions) ~= "boolean" then bad("sessions must be true or false (the same on every node)") end
    local so = o.session_options
    if so ~= nil then
        if type(so) ~= "table" then bad("session_options must be a table {max_sessions =, expire_after =, max_cached_results =}") end
        for k, v in pairs(so) do
            if k ~= "max_sessions" and k ~= "expire_after" and k ~= "max_cached_results" then
                bad(("session_options: unknown option %q (known: expire_after, max_cached_results, max_sessions)"):format(tostring(k)))
            end
            local min = k == "expire_after" and 0 or 1
            if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > 4294967295 then
                bad(("session_options.%s must be an integer from %d to 4294967295, not %s"):format(k, min, tostring(v)))
            end
        end
    end
    local di = o.digest_interval
    if di ~= nil and (type(di) ~= "number" or di ~= math.floor(di) or di < 0) then
        bad(("digest_interval must be an integer >= 0 (commands between state digests; 0: off), not %s"):format(tostring(di)))
    end
    if apply ~= nil and type(apply) ~= "function" then bad("apply must be a function(command, index)") end
    if apply == nil and apply_batch == nil then
        bad("apply = function(command, index) ... end (or apply_batch = function(commands, first_index) ... end) is required")
    end
    if (snapshot == nil) ~= (restore == nil) then bad("give both snapshot and restore, or neither") end
    if snapshot ~= nil and (type(snapshot) ~= "function" or type(restore) ~= "function") then
        bad("snapshot and restore must be functions")
    end
    local level = o.log_level or "warn"
    if LEVELS[level] == nil then bad('log_level must be "debug", "info", "warn" or "error"') end
    if o.log ~= nil and type(o.log) ~= "function" then bad("log must be a function(level, line)") end
    for k, range in pairs(INT_OPTIONS) do
        local v = o[k]
        if v ~= nil and (type(v) ~= "number" or v ~= math.floor(v) or v < range[1] or v > range[2]) then
            bad(("%s must be an integer from %.0f to %.0f: %s; not %s (leave it out for the default)")
                :format(k, range[1], range[2], range[3], tostring(v)))
        end
    end
    for _, k in ipairs({ "pre_vote", "check_quorum", "fsync", "forward", "join" }) do
        if o[k] ~= nil and type(o[k]) ~= "boolean" then bad(("%s must be true or false, not %s"):format(k, tostring(o[k]))) end
    end
    local hb, et = o.heartbeat_ms or 50, o.election_timeout_ms or 500
    if et < 2 * hb then
        bad(("election_timeout_ms (%d) must be at least twice heartbeat_ms (%d): a follower would start elections between heartbeats"):format(et, hb))
    end

    local mf = o.max_frame
    if mf ~= nil and (type(mf) ~= "number" or mf ~= math.floor(mf) or mf < raft.MAX_FRAME_MIN
            or mf > 4294967295) then
        bad(("max_frame must be an integer from %d (64 KiB) to 4294967295 bytes, not %s (leave it out for the default, 64 MiB; the same on every node)")
            :format(raft.MAX_FRAME_MIN, tostring(mf)))
    end
    check_security("node", o.security)
    if o.limits ~= nil then
        if type(o.limits) ~= "table" then bad("limits must be a table") end
        for k, v in pairs(o.limits) do
            if not LIMITS[k] then bad(("limits: unknown key %q"):format(tostring(k))) end
            if type(v) ~= "number" or v < 0 then bad("limits." .. k .. " must be a number >= 0") end
        end
    end

    local seg = o.segment_size
    if seg ~= nil and (type(seg) ~= "number" or seg ~= math.floor(seg)
            or seg < raft.SEGMENT_SIZE_MIN or seg > raft.SEGMENT_SIZE_MAX) then
        bad(("segment_size must be an integer from %d (4 KiB) to %d (1 GiB) bytes, not %s (leave it out for the default, 64 MiB)")
            :format(raft.SEGMENT_SIZE_MIN, raft.SEGMENT_SIZE_MAX, tostring(seg)))
    end

    local self = setmetatable({ _handlers = {}, _last_leader = nil, _sessions = o.sessions ~= false }, Node)
    for name in pairs(EVENTS) do self._handlers[name] = {} end
    if o.on ~= nil then
        if type(o.on) ~= "table" then bad("on must be a table {event = function}") end
        for name, fn in pairs(o.on) do
            if not EVENTS[name] then bad("on: " .. unknown_event(name)) end
            if type(fn) ~= "function" then bad("on." .. name .. " must be a function") end
            table.insert(self._handlers[name], fn)
        end
    end
    local handlers = self._handlers
    local last_leader
    local function dispatch(name, ...)
        for _, fn in ipairs(handlers[name]) do
            fn(...)
        end
    end
    local log_fn = o.log or function(_, line) io.stderr:write(line, "\n") end
    local log_level = level
    -- Sessions, the snapshot envelope and state digests (lua/raft/fsm.lua).
    local adapter = fsm_adapter.new({ apply = apply, apply_batch = apply_batch,
        snapshot = snapshot, restore = restore, digest = digest }, {
        id = o.id, sessions = self._sessions, session_options = so, digest_interval = di,
        log = function(level, line)
            if LEVELS[level] >= LEVELS[log_level] then log_fn(level, line) end
        end,
        on_diverged = function(...) dispatch("diverged", ...) end,
        is_leader = function()
            local c = self._c
            return c ~= nil and c:is_open() and c:status().role == "leader"
        end,
        propose = function(payload, done)
            local c = self._c
            if c == nil or not c:is_open() then return end
            local ok = c:submit(OP.PROPOSE, payload, 0, nil, false, 0, function(status)
                if status ~= 0 and done then done() end
            end)
            if not ok and done then done() end
        end,
    })
    self._adapter = adapter
    local c, msg, code = core.node({
        id = o.id, address = o.address, data_dir = o.data_dir, peers = o.peers,
        cluster_id = o.cluster_id, heartbeat_ms = o.heartbeat_ms,
        election_timeout_ms = o.election_timeout_ms, pre_vote = o.pre_vote,
        check_quorum = o.check_quorum, snapshot_entries = o.snapshot_entries,
        snapshot_trailing = o.snapshot_trailing, fsync = o.fsync, forward = o.forward,
        max_frame = o.max_frame, timeout_ms = o.timeout_ms, seed = o.seed,
        segment_size = seg, log_level = LEVELS[level], log = o.log,
        apply = adapter.apply, apply_batch = adapter.apply_batch, snapshot = adapter.snapshot,
        restore = adapter.restore, log_store = o.log_store, security = o.security, limits = o.limits,
        metrics_address = o.metrics_address, lag_threshold = o.lag_threshold,
        event = function(kind, role, term, leader, index, installed, err, message, match)
            if kind == 1 then
                local l = leader ~= 0 and leader or nil
                dispatch("role", role, term, l)
                if l ~= last_leader then
                    last_leader = l
                    dispatch("leader", l, term)
                end
            elseif kind == 2 then
                dispatch("membership", index)
            elseif kind == 3 then
                dispatch("snapshot", index, installed)
                dispatch(installed and "snapshot_installed" or "snapshot_taken", index)
            elseif kind == 4 then
                local _, name = core.strerror(err)
                dispatch("stopped", name, message)
            elseif kind == 5 then
                dispatch("follower_log_lost", leader, match, index)
            elseif kind == 6 then
                dispatch("snapshot_failed", index, message)
            elseif kind == 7 then
                dispatch("removed", leader, index)
            elseif kind == 8 then
                dispatch("peers_differ", message)
            elseif kind == 9 then
                -- index: the leader's last index; match: the follower's.
                dispatch("follower_lagging", leader, math.max(index - match, 0), match)
            elseif kind == 10 then
                -- match 0: the follower left the configuration, and lags no more.
                dispatch("follower_caught_up", leader, match ~= 0 and math.max(index - match, 0) or 0, match)
            end
        end,
    })
    if not c then
        return nil, msg, code
    end
    self._c = c
    self._has_snapshot = snapshot ~= nil
    self._max_command = core.max_command(o.max_frame)
    self._timeout_ms = o.timeout_ms or 10000
    return self
end

--- node:on(event, fn): fn runs for each event of that name; the names and arguments are
-- Python's (docs/lua.md, "Events"): "role" fn(role, term, leader_id|nil); "leader"
-- fn(leader_id|nil, term); "membership" fn(index); "snapshot" fn(index, installed), then
-- "snapshot_taken" or "snapshot_installed" fn(index); "snapshot_failed" fn(index, message);
-- "follower_lagging" and "follower_caught_up" fn(follower_id, lag, match) on the leader;
-- "stopped" fn(code, message); "follower_log_lost" fn(follower_id, acknowledged, last_index);
-- "peers_differ" fn(message); "removed" fn(by, index); "diverged" fn(index, leader, ours).
-- Handlers run on the loop: keep them short; they must not wait (use callbacks or raft.spawn).
function Node:on(event, fn)
    if not EVENTS[event] then argerror(1, "on", unknown_event(event)) end
    if type(fn) ~= "function" then argerror(2, "on", "function expected, got " .. type(fn)) end
    table.insert(self._handlers[event], fn)
    return self
end

function Node:id() return self._c:id() end

--- The largest command this node accepts (raft.max_command of its max_frame).
function Node:max_command() return self._max_command end

--- The address actually bound (useful with port 0).
function Node:address() return self._c:address() end

function Node:is_open() return self._c:is_open() end

--- A plain table with the fields of Python's status, under the same names (docs/lua.md,
-- "Status"): the runtime's status map decoded (cluster_id in hex), plus digest {index, digest}
-- (the last state digest, hex) and diverged {index, leader, ours} once this node's state was
-- found to differ from the leader's (it then stops). A copy refreshed once per turn of the loop.
function Node:status()
    if not self._c:is_open() then
        return nil, "closed: the node is closed", "ESHUTDOWN"
    end
    local s = self._c:status()
    s.digest = self._adapter.last_digest
    s.diverged = self._adapter.diverged
    return s
end

--- The leader this node knows: id, address; or nil.
function Node:leader()
    local s = self:status()
    if not s or s.leader == 0 then return nil end
    local address = s.leader_address
    if address == "" and s.leader == s.id then address = s.address end
    return s.leader, address
end

function Node:is_leader()
    local s = self:status()
    return s ~= nil and s.role == "leader"
end

--- node:wait_for_leader([timeout_ms], [callback]) -> id, address; or nil, "timeout: ..." (or
-- "no quorum: ..."). Yields in a raft.spawn coroutine, runs the loop elsewhere; with a
-- callback: callback(id, address) or callback(nil, message, code) later, and true now.
function Node:wait_for_leader(timeout_ms, cb)
    if type(timeout_ms) == "function" and cb == nil then timeout_ms, cb = nil, timeout_ms end
    if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms <= 0) then
        argerror(1, "wait_for_leader", "timeout in ms (a number > 0) expected, got " .. show_name(timeout_ms))
    end
    if cb ~= nil then
        if type(cb) ~= "function" then argerror(2, "wait_for_leader", "callback function expected, got " .. type(cb)) end
        return in_coroutine(cb, function() return self:wait_for_leader(timeout_ms) end)
    end
    local ok, msg, code = raft.wait(function() return self:leader() ~= nil end, timeout_ms or 10000,
        "no leader known (are a majority of the peers running and reachable?)")
    if not ok then
        local qmsg, qcode = no_quorum(self)
        if qmsg then return nil, qmsg, qcode end
        return nil, msg, code
    end
    return self:leader()
end

local function check_command(fname, command)
    if type(command) ~= "string" then
        argerror(1, fname, "string expected, got " .. type(command), 3)
    end
    if command:byte(1) == 0xC1 and command:byte(2) == 0x63 then
        argerror(1, fname, "a command may not start with the bytes C1 63: they mark craft's own "
            .. "entries (sessions, state digests; docs/protocol.md)", 3)
    end
end

local function ok_result(index, data) return data, nil, index end

--- node:propose(command, [opts|timeout_ms], callback): callback(result, nil, index) once the
-- entry is committed and applied on this node, or callback(nil, message, code[, leader_id,
-- leader_address]). Returns true, or nil, message, code (the callback is then never called).
function Node:propose(command, a, b)
    check_command("propose", command)
    local opts, cb = options("propose", 2, a, b)
    if cb == nil then argerror(3, "propose", "callback function expected") end
    return request(self, "propose", OP.PROPOSE, command, 0, nil, false, opts.timeout_ms, cb, ok_result)
end

--- node:apply(command, [opts|timeout_ms], [callback]) -> result, nil, index | nil, message,
-- code[, leader_id, leader_address]. With a callback, like propose. Without: in a raft.spawn
-- coroutine it yields until done; elsewhere it drives the loop until done (not from a callback).
-- On a follower the proposal is forwarded to the leader. An error raised by the state
-- machine's apply comes back as nil, "apply failed: <message>", "EAPPLY" (the entry still
-- counts as applied everywhere).
function Node:apply(command, a, b)
    check_command("apply", command)
    local opts, cb = options("apply", 2, a, b)
    return request(self, "apply", OP.PROPOSE, command, 0, nil, false, opts.timeout_ms, cb, ok_result)
end

--- node:apply_many(commands, [opts|timeout_ms], [callback]) -> results, nil, last_index |
-- nil, message, code, outcomes. Every command of the list is proposed at once, without
-- waiting for one before the next (they commit and apply together, in batches), and the call
-- waits for them all: results[k] is the result of commands[k]. When any failed: nil, the first
-- failure's message (which command, and why), its code, and outcomes, where outcomes[k] is
-- {result =, index =} or {error = message, code = code} for each command. The commands are
-- independent proposals: some may commit while others fail. Styles as for node:apply.
function Node:apply_many(commands, a, b)
    if type(commands) ~= "table" then
        argerror(1, "apply_many", "table of strings expected, got " .. type(commands))
    end
    local n = #commands
    for k = 1, n do
        local c = commands[k]
        if type(c) ~= "string" then
            argerror(1, "apply_many", ("commands[%d] is a %s: every command must be a string"):format(k, type(c)))
        end
        if c:byte(1) == 0xC1 and c:byte(2) == 0x63 then
            argerror(1, "apply_many", ("commands[%d] starts with the bytes C1 63: they mark craft's own entries (sessions, state digests; docs/protocol.md)"):format(k))
        end
    end
    local opts, cb = options("apply_many", 2, a, b)
    if cb then
        return in_coroutine(cb, function() return self:apply_many(commands, opts) end)
    end
    local co = current_spawned()
    if not co then
        check_can_wait("node:apply_many")
    end
    local outcomes, left, waiting = {}, n, false
    for k = 1, n do
        -- request() never calls back before it returned, so left counts down afterwards.
        local sent, msg, code = request(self, "apply_many", OP.PROPOSE, commands[k], 0, nil, false,
            opts.timeout_ms, function(r, m, x)
                outcomes[k] = m == nil and { result = r or "", index = x } or { error = m, code = x }
                left = left - 1
                if left == 0 and waiting then resume(co) end
            end, ok_result)
        if not sent then
            outcomes[k] = { error = msg, code = code }
            left = left - 1
        end
    end
    if co then
        waiting = true
        while left > 0 do coroutine.yield() end
    else
        while left > 0 do core.run("once") end
    end
    local results = {}
    for k = 1, n do
        local o = outcomes[k]
        if o.error ~= nil then
            return nil, ("command %d of %d: %s"):format(k, n, o.error), o.code, outcomes
        end
        results[k] = o.result
    end
    return results, nil, n > 0 and outcomes[n].index or nil
end

--- node:barrier([opts], [callback]) -> index: once this node's state machine reflects every
-- write committed before the call (a linearizable read barrier; opts.mode = "lease" skips
-- the heartbeat round while the leader's lease holds).
function Node:barrier(a, b)
    local opts, cb = options("barrier", 1, a, b)
    local op = opts.mode == "lease" and OP.READ_LEASE or OP.READ
    return request(self, "barrier", op, nil, 0, nil, false, opts.timeout_ms, cb,
        function(index) return index end)
end

--- node:read(fn, [opts], [callback]) -> fn()'s values: fn runs on the loop after a read
-- barrier, so it sees every write committed before the call. opts.mode: "linearizable"
-- (default), "lease", or "stale" (fn runs now, on this node's state, which may lag; with a
-- callback, on the next turn of the loop).
-- Without a callback an error raised by fn is raised again here.
function Node:read(fn, a, b)
    if type(fn) ~= "function" then argerror(1, "read", "function expected, got " .. type(fn)) end
    local opts, cb = options("read", 2, a, b)
    local mode = opts.mode or "linearizable"
    local d = self._adapter.diverged
    if d then
        -- A state known to be wrong is never read, not even stale.
        local msg = ("diverged: this node's state machine differs from the leader's (index %d); it stopped applying"):format(d.index)
        if cb then core.after(0, function() cb(nil, msg, "EDIVERGED") end) return true end
        return nil, msg, "EDIVERGED"
    end
    if mode == "stale" then
        -- Like every callback, on the loop after the call returned (fn runs then too).
        if cb then core.after(0, function() cb(fn()) end) return true end
        return fn()
    end
    if mode ~= "linearizable" and mode ~= "lease" then
        argerror(2, "read", 'mode must be "linearizable", "lease" or "stale"')
    end
    local op = mode == "lease" and OP.READ_LEASE or OP.READ
    if cb then
        return request(self, "read", op, nil, 0, nil, false, opts.timeout_ms, cb,
            function() return fn() end)
    end
    local r = pack(request(self, "read", op, nil, 0, nil, false, opts.timeout_ms, nil,
        function() return pack(pcall(fn)) end))
    if r[1] == nil then
        return unpack(r, 1, r.n)
    end
    local inner = r[1]
    if not inner[1] then
        error(inner[2], 0)
    end
    return unpack(inner, 2, inner.n)
end

-- The message of a failed membership change, naming the server and the members.
local function change_failure(self, op, id, msg, code, ...)
    local s = self._c:is_open() and self._c:status()
    if not s then return nil, msg, code, ... end
    local members, listing = {}, {}
    for _, p in ipairs(s.peers) do
        members[p.id] = p
        listing[#listing + 1] = ("%d (%s at %s)"):format(p.id, p.role, p.address)
    end
    listing = table.concat(listing, ", ")
    if code == "EEXISTS" and op == OP.ADD then
        local p = members[id]
        return nil, ("already a member: server %d is a %s at %s; to give it another address, remove_server(%d) and add it again once its data directory is moved aside; members: %s")
            :format(id, p and p.role or "member", p and p.address or "?", id, listing), "EEXISTS"
    elseif code == "ENOTFOUND" and (op == OP.PROMOTE or op == OP.REMOVE or op == OP.DEMOTE) then
        return nil, ("not a member: server %d is not in the configuration; members: %s"):format(id, listing), "ENOTFOUND"
    elseif code == "EINVAL" and op == OP.PROMOTE then
        return nil, ("invalid: server %d is already a voter; promote makes a learner a voter"):format(id), code
    elseif code == "EINVAL" and op == OP.DEMOTE then
        local p = members[id]
        local why = (p and p.role == "learner") and "already a learner"
            or "the last voter: a cluster without voters could never elect a leader again"
        return nil, ("invalid: server %d is %s; members: %s"):format(id, why, listing), code
    elseif code == "EINVAL" and op == OP.TRANSFER then
        local p = members[id]
        return nil, ("invalid: server %d is %s: only a voter can lead; members: %s")
            :format(id, p and ("a " .. p.role) or "not a member", listing), code
    elseif code == "EINVAL" and op == OP.REMOVE then
        return nil, ("invalid: server %d is the last voter; a cluster without voters could never elect a leader again"):format(id), code
    end
    return nil, msg, code, ...
end

local function change(self, fname, op, id, address, auto, opts, cb)
    if not is_id(id) and not (op == OP.TRANSFER and id == 0) then
        argerror(1, fname, "server id expected", 3)
    end
    if op == OP.ADD then
        check_address(function(m) argerror(2, fname, m, 4) end, "address", address, false)
    end
    local function shape(r, ...)
        if r == nil then return change_failure(self, op, id, ...) end
        return r, ...
    end
    if cb then
        return request(self, fname, op, nil, id, address, auto, opts.timeout_ms,
            function(...) cb(shape(...)) end, function(index) return index end)
    end
    return shape(request(self, fname, op, nil, id, address, auto, opts.timeout_ms, nil,
        function(index) return index end))
end

--- node:add_server(id, address, [opts], [callback]) -> index of the configuration entry.
-- The server (started with join = true) joins as a learner; opts.auto_promote (default
-- true) makes the leader promote it to voter once it has caught up.
function Node:add_server(id, address, a, b)
    if type(address) ~= "string" then argerror(2, "add_server", "address string expected") end
    local opts, cb = options("add_server", 3, a, b)
    local auto = opts.auto_promote
    if auto == nil then auto = true end
    return change(self, "add_server", OP.ADD, id, address, auto, opts, cb)
end

--- node:promote(id, [opts], [callback]) -> index: a caught-up learner becomes a voter.
function Node:promote(id, a, b)
    local opts, cb = options("promote", 2, a, b)
    return change(self, "promote", OP.PROMOTE, id, nil, false, opts, cb)
end

--- node:remove_server(id, [opts], [callback]) -> index.
function Node:remove_server(id, a, b)
    local opts, cb = options("remove_server", 2, a, b)
    return change(self, "remove_server", OP.REMOVE, id, nil, false, opts, cb)
end

--- node:demote(id, [opts], [callback]) -> index: a voter becomes a learner (it keeps its log
-- and receives entries, but no longer votes; a leader demoting itself steps down once the
-- change commits).
function Node:demote(id, a, b)
    local opts, cb = options("demote", 2, a, b)
    return change(self, "demote", OP.DEMOTE, id, nil, false, opts, cb)
end

--- node:transfer_leadership([id], [opts], [callback]) -> true once this node no longer leads
-- (id 0 or nil: the most up-to-date voter).
function Node:transfer_leadership(id, a, b)
    if type(id) ~= "number" then id, a, b = 0, id, a end
    local opts, cb = options("transfer_leadership", 2, a, b)
    if cb then
        local inner = cb
        cb = function(r, ...)
            if r ~= nil then return inner(true) end
            return inner(r, ...)
        end
    end
    local r = pack(change(self, "transfer_leadership", OP.TRANSFER, id, nil, false, opts, cb))
    if r[1] ~= nil and cb == nil then return true end
    return unpack(r, 1, r.n)
end

--- node:snapshot([opts], [callback]) -> index: takes a snapshot of this node's state machine
-- now, whatever snapshot_entries says, and returns the index it covers once it is stored (at
-- once when the latest snapshot covers everything applied). Never forwarded: it is this node's.
-- nil, "invalid: ...", "EINVAL" without a snapshot function; a snapshot that raises fails the
-- call with its message (and raises "snapshot_failed").
function Node:snapshot(a, b)
    local opts, cb = options("snapshot", 1, a, b)
    if self._c:is_open() and not self._has_snapshot then
        local msg = ("invalid: node %d's state machine takes no snapshots (give snapshot and restore)"):format(self._c:id())
        if cb then
            core.after(0, function() cb(nil, msg, "EINVAL") end)
            return true
        end
        return nil, msg, "EINVAL"
    end
    return request(self, "snapshot", OP.SNAPSHOT, nil, 0, nil, false, opts.timeout_ms, cb,
        function(index) return index end)
end

--- node:metrics([openmetrics]) -> the node's metrics as Prometheus text (format 0.0.4), or
-- OpenMetrics 1.0 with openmetrics = true (docs/metrics.md lists them); nil, message, code once
-- closed. The metrics_address option serves the same as GET /metrics from the loop.
function Node:metrics(openmetrics)
    if openmetrics ~= nil and type(openmetrics) ~= "boolean" then
        argerror(1, "metrics", "boolean expected, got " .. type(openmetrics))
    end
    if not self._c:is_open() then
        return nil, "closed: the node is closed", "ESHUTDOWN"
    end
    return self._c:metrics(openmetrics == true)
end

-- ---- client sessions --------------------------------------------------------------------------

local Session = {}
Session.__index = Session
raft.Session = Session

-- Failures after which the same envelope may be sent again: the session table applies it once.
local RETRY = { ETIMEDOUT = true, ENOQUORUM = true, EDROPPED = true, ENOCONN = true,
    ENOTLEADER = true, EBUSY = true }

-- Sends envelope through the node until an answer that is not a retryable failure, or until
-- timeout_ms: result, nil, index | nil, message, code.
function Session:_retry(envelope, timeout_ms)
    local deadline = raft.now() + timeout_ms
    local delay = 20
    while true do
        local left = deadline - raft.now()
        if left <= 0 then
            return nil, "timeout: the session got no answer in time; sending the same command again through this session later is still safe", "ETIMEDOUT"
        end
        local r = pack(request(self.node, "session:apply", OP.PROPOSE, envelope, 0, nil, false,
            left, nil, ok_result))
        if r[1] ~= nil or not RETRY[r[3]] or deadline - raft.now() <= delay then
            return unpack(r, 1, r.n)
        end
        raft.sleep(delay)
        delay = math.min(delay * 2, 500)
    end
end

--- node:session([opts], [callback]) -> a client session (Raft thesis 6.3), or nil, message, code: commands
-- sent through session:apply are applied exactly once, however often they are retried. Needs
-- sessions (the default) on every node. opts.timeout_ms: for each call (default 10000). Blocking,
-- in a raft.spawn coroutine, or with a callback: callback(session) or callback(nil, message, code).
function Node:session(opts, cb)
    if not self._sessions then
        error("raft: this node runs without sessions (sessions = false): sessions need them on every node", 2)
    end
    if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
    if opts ~= nil and type(opts) ~= "table" then argerror(1, "session", "options table expected") end
    if cb ~= nil then
        if type(cb) ~= "function" then argerror(2, "session", "callback function expected, got " .. type(cb)) end
        return in_coroutine(cb, function() return self:session(opts) end)
    end
    opts = opts or {}
    local s = setmetatable({ node = self, timeout_ms = opts.timeout_ms or self._timeout_ms,
        seq = 0, ack = 0, done = {}, closed = false }, Session)
    local r, msg, code = s:_retry(core.session_register(), s.timeout_ms)
    if r == nil then return nil, msg, code end
    s.client_id = code -- the index of the registration: the client's id
    return s
end

function Session:_completed(seq)
    self.done[seq] = true
    while self.done[self.ack + 1] do
        self.ack = self.ack + 1
        self.done[self.ack] = nil
    end
end

--- session:apply(command, [opts|timeout_ms], [callback]) -> result, nil, index | nil, message,
-- code: applies command exactly once, retrying the same envelope on timeouts, lost leaders and
-- dropped proposals. "ESESSION" (message "session: ...") means the session expired or forgot the
-- command: whether it was applied cannot be known; open a new session. With a callback it runs
-- in a coroutine of its own and returns true.
function Session:apply(command, a, b)
    check_command("session:apply", command)
    local opts, cb = options("apply", 2, a, b)
    if cb then
        return in_coroutine(cb, function() return self:apply(command, opts) end)
    end
    if self.closed then
        return nil, "closed: the session is closed; open a new one with node:session()", "ESHUTDOWN"
    end
    self.seq = self.seq + 1
    local seq = self.seq
    local envelope = core.session_command(self.client_id, seq, self.ack, command)
    local r = pack(self:_retry(envelope, opts.timeout_ms or self.timeout_ms))
    if r[1] ~= nil or r[3] == "EAPPLY" or r[3] == "ESESSION" then
        self:_completed(seq)
    end
    return unpack(r, 1, r.n)
end

--- session:close([callback]) -> true: unregisters the session (the cluster forgets its results).
function Session:close(cb)
    if cb ~= nil then
        if type(cb) ~= "function" then argerror(1, "close", "callback function expected, got " .. type(cb)) end
        return in_coroutine(cb, function() return self:close() end)
    end
    if self.closed then return true end
    self.closed = true
    local r, msg, code = self:_retry(core.session_unregister(self.client_id), self.timeout_ms)
    if r ~= nil or code == "ESESSION" then return true end -- gone already: it worked
    return nil, msg, code
end

--- Stops the node gracefully: pending requests fail with "closed", writes in progress are
-- flushed, connections and the store are closed. Idempotent; __gc and __close do the same.
-- From a callback the stop completes on the loop afterwards.
--- node:set_security(settings): new security settings for the running node, to rotate a
-- certificate, a CA or the cluster secret without downtime (docs/security.md). Returns true,
-- or nil, message, code (the node keeps its settings).
function Node:set_security(sec)
    check_security("set_security", sec)
    return self._c:set_security(sec)
end

function Node:close()
    if self._c then
        return self._c:close()
    end
    return true
end
Node.__close = Node.close

function Node:__tostring()
    return ("raft.node(%d, %s%s)"):format(self._c:id(), self._c:address(), self._c:is_open() and "" or ", closed")
end

return raft
