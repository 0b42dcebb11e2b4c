--- raft.sim: the deterministic simulator with Lua state machines.
--
-- N Raft nodes in one process, a virtual clock, a seeded network that can delay, drop,
-- duplicate and reorder messages, partitions, crashes and restarts, and the Raft safety
-- properties checked after every event. The same seed and the same calls give the same run.
--
--     local sim = require "raft.sim"
--     local c = sim.cluster{ n = 3, seed = 7, fsm = counter }   -- counter() makes a state machine
--     local leader = c:wait_for_leader()
--     print(c:apply("inc"))            -- propose at the leader, run until applied
--     c:crash(leader)
--     c:partition({1}, {2, 3})
--     c:run_until(function() local l = c:leader(); return l and l ~= leader end, 500)
--     c:print_trace()
--
-- A state machine is a table of functions {apply = function(command, index) ... end,
-- snapshot = function() return string end, restore = function(string) ... end} (the same shape
-- raft.node takes as fsm =); fsm = is a factory that makes a fresh one, called at every boot
-- and before a snapshot is restored. A safety violation raises an error naming the seed and the
-- invariant, followed by the last events.
--
-- For test authors (docs/simulator.md, "Scripting a scenario"), with the same semantics as
-- craft.sim in Python: rules that hold, drop, duplicate or delay messages selected by
-- {types =, from =, to =, where =} (c:hold, c:drop, c:duplicate, c:delay), the held messages
-- delivered in any order (c:held, c:deliver, c:discard), messages built by hand (c:inject),
-- c:campaign(node), clocks (c:set_clock, c:tick(n, node)), options for a node's next boot
-- (c:configure), every event as a table (on_event =, c:recent_events), hooks for apply and
-- restore (on_apply =, on_restore =), c:status with the configuration in effect and the leader's
-- progress, non-blocking reads (c:read_start, c:read_result), c:link_stats, c:durable. A Raft
-- written in Lua runs in place of craft's core with core = (examples/lab/lua).

local core = require "raft.core"
local raft = require "raft"

local sim = {}

local Cluster = {}
Cluster.__index = Cluster
sim.Cluster = Cluster

local ENTRY_COMMAND = 1
local ENTRY_TYPES = { "command", "barrier", "config" }
local EVIOLATION = core.codes.EVIOLATION
local ETIMEDOUT = core.codes.ETIMEDOUT
local ENOTFOUND = core.codes.ENOTFOUND

local function snapshot_string(v)
    if type(v) == "string" then return v end
    if type(v) == "table" then return table.concat(v) end
    if v == nil then return "" end
    error("snapshot must return a string or a table of strings, not a " .. type(v), 0)
end

--- sim.cluster{n = 3, seed = 1, fsm = factory, trace = true|function(line), ...options}
-- Options (as craft/sim.h): election_ticks (10), heartbeat_ticks (1), pre_vote, check_quorum
-- (true), max_batch_entries, max_batch_bytes, max_inflight, snapshot_entries, snapshot_bytes,
-- snapshot_trailing, snapshot_chunk_bytes, promote_distance, promote_rounds, lease_reads,
-- lease_drift_ticks, tick_ms (10), tick_jitter_ms (1), min_delay_ms (1), max_delay_ms (10),
-- drop_rate, dup_rate, disk_min_ms, disk_max_ms (2), bootstrap (true), n_voters (n),
-- trace_depth (64).
function sim.cluster(o)
    o = o or {}
    if type(o) ~= "table" then error("bad argument #1 to 'cluster' (options table expected)", 2) end
    local n = o.n or 3
    local self = setmetatable({
        n = n, seed = o.seed or 1, events = {}, _fsms = {}, _applied = {}, _read_id = 0,
        _factory = o.fsm, _tick_ms = o.tick_ms or 10,
        _drop = o.drop_rate or 0, _dup = o.dup_rate or 0,
        _delay = { o.min_delay_ms or 1, o.max_delay_ms or 10 },
    }, Cluster)
    if self._factory ~= nil and type(self._factory) ~= "function" then
        error("raft.sim: fsm must be a factory function returning {apply=, snapshot=, restore=}", 2)
    end
    for i = 1, n do self._applied[i] = {} end
    local opts = {}
    local hooks = { on_event = true, on_apply = true, on_restore = true }
    for k, v in pairs(o) do
        if k ~= "n" and k ~= "fsm" and k ~= "trace" and not hooks[k] then opts[k] = v end
    end
    opts.n_nodes = n
    opts.seed = self.seed
    opts.event = o.on_event
    local on_apply, on_restore = o.on_apply, o.on_restore
    opts.apply = function(node, index, term, type_, data, incarnation)
        if on_apply then
            on_apply({ node = node, index = index, term = term, type = ENTRY_TYPES[type_] or "unknown",
                       data = data, incarnation = incarnation })
        end
        if type_ ~= ENTRY_COMMAND then return end
        local fsm = self:_fsm_of(node)
        local rec = { index = index, term = term, data = data }
        if fsm then
            local ok, r = pcall(fsm.apply, data, index)
            if ok then
                rec.result = r
            else
                rec.error = tostring(r)
            end
        end
        local list = self._applied[node]
        list[#list + 1] = rec
    end
    if self._factory then
        opts.snapshot = function(node)
            local fsm = self:_fsm_of(node)
            if not fsm.snapshot then return "" end
            return snapshot_string(fsm.snapshot())
        end
    end
    -- Every (re)start of a node's state machine, with or without fsm =: what applied() reports
    -- is what the state machine holds beyond the snapshot it was restored from.
    opts.restore = function(node, data, index, incarnation)
        self._applied[node] = {}
        if self._factory then
            local fsm = self._factory()
            self._fsms[node] = fsm
            if data ~= nil and data ~= "" then
                if not fsm.restore then error("the state machine has no restore function", 0) end
                fsm.restore(data)
            end
        end
        if on_restore then
            on_restore({ node = node, index = index, incarnation = incarnation, data = data })
        end
    end
    local trace = o.trace
    if trace then
        opts.trace = function(line)
            if trace == true then
                self.events[#self.events + 1] = line
            else
                trace(line)
            end
        end
    end
    local s, msg = core.sim(opts)
    if not s then error(msg, 2) end
    self._sim = s
    return self
end

function Cluster:_fsm_of(node)
    if not self._factory then return nil end
    local fsm = self._fsms[node]
    if not fsm then
        fsm = self._factory()
        self._fsms[node] = fsm
    end
    return fsm
end

-- Raises on a safety violation (a bug found: never a normal outcome); returns rc otherwise.
function Cluster:_check_rc(rc)
    if rc == EVIOLATION then
        error(("raft.sim: safety violation (seed %d): %s\nlast events:\n  %s"):format(
            self.seed, tostring(self._sim:error()), table.concat(self._sim:trace_lines(), "\n  ")), 3)
    end
    if rc ~= 0 and rc ~= ETIMEDOUT and rc ~= ENOTFOUND then
        local e = self._sim:error()
        if e then error(("raft.sim: the simulator stopped (seed %d): %s"):format(self.seed, e), 3) end
    end
    return rc
end

local function fail(rc, what)
    local msg, code = raft._failure(rc, what)
    return nil, msg, code
end

local function check_node(self, node, fname)
    if type(node) ~= "number" or node < 1 or node > self.n or node ~= math.floor(node) then
        error(("bad argument #1 to '%s' (node 1..%d expected, got %s)"):format(fname, self.n, tostring(node)), 3)
    end
end

-- ---- running ---------------------------------------------------------------------------------

--- Virtual time in ms.
function Cluster:now() return self._sim:now() end

--- Runs the next event; false when nothing is pending.
function Cluster:step() return self:_check_rc(self._sim:step()) == 0 end

--- Lets n ticks (tick_ms each) of virtual time pass. With node: ticks that node's core n times
-- now, without moving the clock (true; or nil, "down: ...").
function Cluster:tick(n, node)
    if node == nil then
        self:_check_rc(self._sim:run_for((n or 1) * self._tick_ms))
        return true
    end
    check_node(self, node, "tick")
    local rc = self:_check_rc(self._sim:tick_node(node, n or 1))
    if rc ~= 0 then return nil, ("down: node %d is down"):format(node), "ESTATE" end
    return true
end

--- Lets ms of virtual time pass.
function Cluster:run(ms) self:_check_rc(self._sim:run_for(ms)) end

--- Runs until pred(cluster) is true (checked after every event): true, or false when
-- max_ticks passed first.
function Cluster:run_until(pred, max_ticks)
    local rc = self:_check_rc(self._sim:run_until(function() return pred(self) end,
        (max_ticks or 1000) * self._tick_ms))
    return rc == 0
end

--- Runs until there is a leader: its id, or nil, "timeout: ...".
function Cluster:wait_for_leader(max_ticks)
    max_ticks = max_ticks or 1000
    if not self:run_until(function(c) return c:leader() ~= nil end, max_ticks) then
        return nil, ("timeout: no leader after %d ticks (seed %d)"):format(max_ticks, self.seed), "ETIMEDOUT"
    end
    return self:leader()
end

-- ---- faults ----------------------------------------------------------------------------------


--- Crashes a node: it loses its volatile state and unfinished disk writes.
function Cluster:crash(node)
    check_node(self, node, "crash")
    local rc = self:_check_rc(self._sim:crash(node))
    if rc ~= 0 then return fail(rc, "node " .. node .. " is already down") end
    self._fsms[node] = nil
    return true
end

--- Restarts a crashed node from what its disk holds.
function Cluster:restart(node)
    check_node(self, node, "restart")
    local rc = self:_check_rc(self._sim:restart(node))
    if rc ~= 0 then return fail(rc, "node " .. node .. " is already up") end
    return true
end

--- partition({1, 2}, {3, 4, 5}): messages pass only within a group; a node in no group is
-- isolated.
function Cluster:partition(...)
    local groups = { ... }
    local group_of, seen = {}, {}
    for g, members in ipairs(groups) do
        for _, m in ipairs(members) do
            if seen[m] or m < 1 or m > self.n then
                error(("raft.sim: partition: node %s is unknown or in two groups"):format(tostring(m)), 2)
            end
            seen[m] = true
            group_of[m] = g
        end
    end
    local nxt = #groups + 1
    for i = 1, self.n do
        if not group_of[i] then group_of[i] = nxt; nxt = nxt + 1 end
    end
    self:_check_rc(self._sim:partition(group_of))
end

--- Messages from a to b are lost (one direction only).
function Cluster:cut(a, b)
    check_node(self, a, "cut")
    check_node(self, b, "cut")
    self:_check_rc(self._sim:cut(a, b))
end

--- Removes every partition and cut.
function Cluster:heal() self:_check_rc(self._sim:heal()) end

--- network{drop = p, duplicate = p, delay = {lo_ms, hi_ms}}: changes what is given.
function Cluster:network(o)
    o = o or {}
    local drop = o.drop or self._drop
    local dup = o.duplicate or self._dup
    local delay = o.delay or self._delay
    local rc = self._sim:set_network(drop, dup, delay[1], delay[2])
    if rc ~= 0 then error("raft.sim: network: probabilities in [0, 1] and delay lo <= hi", 2) end
    self._drop, self._dup, self._delay = drop, dup, { delay[1], delay[2] }
end

--- Changes the disks' write latency range.
function Cluster:disk(lo_ms, hi_ms)
    local rc = self._sim:set_disk(lo_ms, hi_ms)
    if rc ~= 0 then error("raft.sim: disk: lo <= hi", 2) end
end

--- Adds a line to the trace.
function Cluster:note(text) self._sim:note(tostring(text)) end

-- ---- scripting a scenario (docs/simulator.md, "Scripting a scenario") -------------------------
--
-- A selection of messages is a table with any of: types (a name such as "AppendEntries", or a
-- list of names), from and to (server ids), where (a function of the message table). Each
-- condition given must hold.

local Rule = {}
Rule.__index = Rule

--- Takes the rule away: true, or false when it was gone already (a rule with a count goes by
-- itself).
function Rule:remove() return self._sim:rule_remove(self.id) end

local function rule(self, action, sel, extra)
    sel = sel or {}
    if type(sel) ~= "table" then error("bad argument to '" .. action .. "' (selection table expected)", 3) end
    local t = {}
    for k, v in pairs(sel) do t[k] = v end
    for k, v in pairs(extra or {}) do t[k] = v end
    local id, msg = self._sim:rule_add(action, t)
    if not id then error("raft.sim: " .. tostring(msg), 3) end
    return setmetatable({ id = id, action = action, _sim = self._sim }, Rule)
end

--- Messages sent from now on that the selection matches are kept aside until c:deliver() or
-- c:discard() (sel.count: only the next count of them). c:held() lists them.
function Cluster:hold(sel) return rule(self, "hold", sel) end
--- Messages sent from now on that match are lost.
function Cluster:drop(sel) return rule(self, "drop", sel) end
--- Messages sent from now on that match are delivered twice.
function Cluster:duplicate(sel) return rule(self, "duplicate", sel) end
--- Messages sent from now on that match arrive ms later than the network would.
function Cluster:delay(ms, sel) return rule(self, "delay", sel, { delay_ms = ms }) end
--- Removes every rule (held messages stay held).
function Cluster:clear_rules() self._sim:rules_clear() end

--- The held messages that match, oldest first: message tables with id and held_at.
function Cluster:held(sel) return self._sim:held(sel) end

--- Delivers the held messages that match (at most max; nil or 0: all), now, in the order they
-- were held; each receiver reacts at once. Returns how many.
function Cluster:deliver(sel, max)
    local rc, n = self._sim:deliver(sel, max or 0)
    self:_check_rc(rc)
    return n
end

--- Drops the held messages that match; returns how many.
function Cluster:discard(sel) return self._sim:discard(sel) end

--- Sends a message built by hand (a table as the events show them: type, from, to, term and
-- the type's fields), delay ms from now, past the rules and the network's loss.
function Cluster:inject(message, delay)
    local rc = self:_check_rc(self._sim:inject(message, delay or 0))
    if rc ~= 0 then
        error(("raft.sim: inject: from and to must be two different servers of this simulation (1..%d)"):format(self.n), 2)
    end
end

--- Makes node start an election now: true; or nil, "state: ..." if it is down, leads already
-- or cannot campaign (a learner).
function Cluster:campaign(node)
    check_node(self, node, "campaign")
    local rc = self:_check_rc(self._sim:campaign(node))
    if rc ~= 0 then
        return nil, ("state: node %d cannot campaign (down, leader, or not a voter)"):format(node), "ESTATE"
    end
    return true
end

--- Node's clock ticks every tick_ms of virtual time (node nil: every node); 0 stops it.
function Cluster:set_clock(node, tick_ms)
    if node ~= nil then check_node(self, node, "set_clock") end
    local rc = self:_check_rc(self._sim:set_clock(node or 0, tick_ms))
    if rc ~= 0 then error("raft.sim: set_clock: a tick interval above tick_jitter_ms, or 0", 2) end
end

function Cluster:clock(node) return self._sim:clock(node) end

--- Protocol options for node's next boot (restart): election_ticks, pre_vote, ...
function Cluster:configure(node, options)
    check_node(self, node, "configure")
    if self._sim:set_node_config(node, options) ~= 0 then
        error("raft.sim: configure: heartbeat_ticks must be below election_ticks", 2)
    end
end

function Cluster:node_config(node) return self._sim:node_config(node) end

--- Messages over the link from -> to: sent, bytes, delivered, dropped, held.
function Cluster:link_stats(from, to) return self._sim:link_stats(from, to) end

--- What node's disk holds, up or down: hard_state, first_index, last_index, entries, snapshot.
function Cluster:durable(node) return self._sim:durable(node) end

--- The last trace_depth events as tables (see on_event).
function Cluster:recent_events() return self._sim:events() end

-- ---- requests --------------------------------------------------------------------------------

--- Proposes a command at node (default: the leader): index, term; or nil, message, code.
function Cluster:propose(data, node)
    if type(data) ~= "string" then error("bad argument #1 to 'propose' (string expected)", 2) end
    local rc, index, term = self._sim:propose(node or 0, data)
    self:_check_rc(rc)
    if rc ~= 0 then
        if rc == core.codes.ESTATE then return nil, ("down: node %d is down"):format(node), "ESTATE" end
        local leader = self:leader()
        return nil, raft._failure(rc, nil, leader or 0, "")
    end
    return index, term
end

--- Proposes at node (default: the leader) and runs until that node applied the entry: what
-- its state machine returned; or nil, message, code ("apply failed: ..." when apply raised,
-- "dropped: ..." when a leader change lost it, "timeout: ..." after max_ticks).
function Cluster:apply(data, node, max_ticks)
    local at = node or self:leader()
    if not at then return nil, raft._failure(core.codes.ENOTLEADER) end
    local index, term, code = self:propose(data, at)
    if not index then return nil, term, code end
    max_ticks = max_ticks or 1000
    local ok = self:run_until(function(c)
        return c:applied_index(at) >= index or not c:is_up(at)
    end, max_ticks)
    if not ok then
        return nil, ("timeout: index %d was not applied on node %d in %d ticks"):format(index, at, max_ticks), "ETIMEDOUT"
    end
    local list = self._applied[at]
    for i = #list, 1, -1 do
        local a = list[i]
        if a.index == index then
            if a.term ~= term then return fail(core.codes.EDROPPED) end
            if a.error then return nil, "apply failed: " .. a.error, "EAPPLY" end
            return a.result
        end
    end
    return fail(core.codes.EDROPPED, ("index %d was not applied on node %d (crash or snapshot)"):format(index, at))
end

local function changed(self, rc, index, what)
    self:_check_rc(rc)
    if rc ~= 0 then
        local msg, code = raft._failure(rc, what)
        return nil, msg, code
    end
    return index
end

--- Adds a spare server (see n_voters) as a learner: the configuration entry's index.
function Cluster:add_server(node, auto_promote)
    check_node(self, node, "add_server")
    local rc, index = self._sim:add_server(node, auto_promote and true or false)
    return changed(self, rc, index, "add_server(" .. node .. ")")
end

--- Makes a caught-up learner a voter.
function Cluster:promote(node)
    check_node(self, node, "promote")
    local rc, index = self._sim:promote(node)
    return changed(self, rc, index, "promote(" .. node .. ")")
end

function Cluster:remove_server(node)
    check_node(self, node, "remove_server")
    local rc, index = self._sim:remove_server(node)
    return changed(self, rc, index, "remove_server(" .. node .. ")")
end

--- Asks the leader to hand leadership to node (0 or nil: the most up-to-date voter).
function Cluster:transfer_leadership(node)
    local rc = self._sim:transfer(node or 0)
    local r, msg, code = changed(self, rc, true, "transfer_leadership")
    return r, msg, code
end

--- A linearizable (or "lease") read at node (default: the leader): runs until served and
-- returns fn(state machine of node) (the read's record without fn); or nil, message, code.
function Cluster:read(fn, node, mode, max_ticks)
    mode = mode or "linearizable"
    if mode ~= "linearizable" and mode ~= "lease" then
        error('bad argument #3 to \'read\' (mode must be "linearizable" or "lease")', 2)
    end
    local at = node or self:leader()
    if not at then return nil, raft._failure(core.codes.ENOTLEADER) end
    self._read_id = self._read_id + 1
    local id = self._read_id
    local rc = self:_check_rc(self._sim:read(at, id, mode == "lease"))
    if rc ~= 0 then return fail(rc, "read") end
    max_ticks = max_ticks or 1000
    local ok = self:run_until(function(c)
        local r = c._sim:read_result(id)
        return r ~= nil and (r.state == "served" or r.state == "failed")
    end, max_ticks)
    if not ok then
        return nil, ("timeout: read %d at node %d not served in %d ticks"):format(id, at, max_ticks), "ETIMEDOUT"
    end
    local record = self._sim:read_result(id)
    if record.state == "failed" then return fail(record.status, "read") end
    if fn == nil then return record end
    return fn(self:_fsm_of(at))
end

--- Starts a read at node (default: the leader) without running the simulation: its id for
-- c:read_result(); or nil, message, code.
function Cluster:read_start(node, mode)
    mode = mode or "linearizable"
    if mode ~= "linearizable" and mode ~= "lease" then
        error('bad argument #2 to \'read_start\' (mode must be "linearizable" or "lease")', 2)
    end
    local at = node or self:leader()
    if not at then return nil, raft._failure(core.codes.ENOTLEADER) end
    self._read_id = self._read_id + 1
    local id = self._read_id
    local rc = self:_check_rc(self._sim:read(at, id, mode == "lease"))
    if rc ~= 0 then return fail(rc, "read") end
    return id
end

--- The record of a read (state "pending", "ready", "served" or "failed", index, status, ...), or
-- nil for an unknown id.
function Cluster:read_result(id) return self._sim:read_result(id) end

-- ---- observing -------------------------------------------------------------------------------

--- The live leader with the highest term, or nil.
function Cluster:leader()
    local l = self._sim:leader()
    if l == 0 then return nil end
    return l
end

function Cluster:is_up(node) return self._sim:is_up(node) end

--- A node as the simulator sees it: up, role, term, vote, leader, commit, applied, first_index,
-- last_index, last_term, boots, restored_index, the configuration in effect (voters, learners,
-- conf_index), transfer_target and, on the leader, progress[server] = {role, state, match,
-- next, inflight, recent_active}.
function Cluster:status(node) return self._sim:status(node) end

--- The node's log: { {index, term, type, data}, ... } (type 1 command, 2 barrier, 3 config).
function Cluster:log(node) return self._sim:log(node) end

--- Commands the node's current state machine applied (since its last restore):
-- { {index, term, data, result, error}, ... }.
function Cluster:applied(node)
    local out = {}
    for i, a in ipairs(self._applied[node]) do out[i] = a end
    return out
end

function Cluster:applied_index(node) return self._sim:status(node).applied end

--- The node's state machine (nil without fsm =, or while the node is down).
function Cluster:fsm(node)
    if not self:is_up(node) then return nil end
    return self:_fsm_of(node)
end

--- The highest index known to be committed anywhere.
function Cluster:committed() return self._sim:committed() end

--- events, ticks, disk writes, crashes, restarts, changes, transfers, reads, and per message
-- type: sent, bytes, delivered, dropped, duplicated.
function Cluster:stats() return self._sim:stats() end

--- Checks every invariant over every node now; raises on a violation.
function Cluster:check() self:_check_rc(self._sim:check()) return true end

--- The last trace_depth events, one line each.
function Cluster:trace() return self._sim:trace_lines() end

function Cluster:print_trace()
    for _, line in ipairs(self:trace()) do print(line) end
end

--- True when every live node (or those given) applied up to the cluster's commit index.
function Cluster:converged(nodes)
    local target = self:committed()
    if not nodes then
        nodes = {}
        for i = 1, self.n do if self:is_up(i) then nodes[#nodes + 1] = i end end
    end
    for _, i in ipairs(nodes) do
        if self:applied_index(i) < target then return false end
    end
    return true
end

-- ---- transcripts (docs/simulator.md, "Transcripts") -----------------------------------------

--- Runs a transcript given as text: {output =, report =, commands =, mismatches =, ok =}
-- (output: the transcript with every command's actual output).
function sim.run_transcript_text(text, path)
    local output, report, commands, mismatches = core.run_script(text)
    return { path = path, output = output, report = report, commands = commands,
             mismatches = mismatches, ok = mismatches == 0 }
end

--- Runs the transcript in a file (sim.run_transcript_text's result); with {rewrite = true},
-- writes the actual outputs back into it. nil, message when the file cannot be read.
function sim.run_transcript(path, o)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local text = f:read("*a")
    f:close()
    local r = sim.run_transcript_text(text, path)
    if o and o.rewrite and r.output ~= text then
        f, err = io.open(path, "wb")
        if not f then return nil, err end
        f:write(r.output)
        f:close()
    end
    return r
end

--- Frees the simulator (also done by the garbage collector).
function Cluster:close() self._sim:close() end
Cluster.__close = Cluster.close

return sim
