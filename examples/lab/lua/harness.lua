--- The Lua lab's test harness (the twin of examples/lab/harness.py): a simulated cluster running
-- your Raft (raft.lua) in raft.sim, and the checks part A's tests are written with.
--
-- Which Raft runs: LAB_RAFT=module (default "raft", your raft.lua; "craft": craft's own core).
-- Seeds: LAB_SEEDS=N (seeds 1..N, default 3), LAB_SEED=S (that seed only: the replay).
local sim = require "raft.sim"

local harness = {}

function harness.load_raft()
    local name = os.getenv("LAB_RAFT") or "raft"
    if name == "craft" then return nil end
    return require(name)
end

function harness.seeds()
    if os.getenv("LAB_SEED") then return { tonumber(os.getenv("LAB_SEED")) } end
    local out = {}
    for s = 1, tonumber(os.getenv("LAB_SEEDS") or "3") do out[#out + 1] = s end
    return out
end

local Lab = {}
Lab.__index = Lab

--- A cluster of n servers running the Raft under test. Writes are instant (part A).
function harness.lab(n, seed)
    local raft = harness.load_raft()
    local o = { n = n, seed = seed, trace_depth = 120, election_ticks = 10, heartbeat_ticks = 2,
                disk_min_ms = 0, disk_max_ms = 0 }
    if raft then o.core = raft.new end
    local self = setmetatable({ n = n, seed = seed, c = sim.cluster(o), connected = {} }, Lab)
    for i = 1, n do self.connected[i] = true end
    -- The simulator's own generator is internal: draw the test's choices from the seed too.
    self.rs = seed * 7919 + n
    return self
end

function Lab:random(lo, hi)
    self.rs = self.rs * 16807 % 2147483647
    return lo + self.rs % (hi - lo + 1)
end

function Lab:run(ms) self.c:run(ms) end

function Lab:_network()
    local group, alone = {}, {}
    for i = 1, self.n do
        if self.connected[i] then group[#group + 1] = i else alone[#alone + 1] = { i } end
    end
    if #alone == 0 then
        self.c:heal()
    else
        local unpack_ = table.unpack or unpack -- 5.4, LuaJIT
        self.c:partition(group, unpack_(alone))
    end
end

function Lab:disconnect(i) self.connected[i] = false; self:_network() end
function Lab:connect(i) self.connected[i] = true; self:_network() end

--- term -> the connected servers that believe they lead in it.
function Lab:leaders()
    local by = {}
    for i = 1, self.n do
        local st = self.c:status(i)
        if st.up and self.connected[i] and st.role == "leader" then
            by[st.term] = by[st.term] or {}
            table.insert(by[st.term], i)
        end
    end
    return by
end

function Lab:check_one_leader()
    for _ = 1, 10 do
        self:run(500)
        local best
        for term, who in pairs(self:leaders()) do
            if #who > 1 then error(("term %d has %d leaders"):format(term, #who), 2) end
            if not best or term > best then best = term end
        end
        if best then return self:leaders()[best][1] end
    end
    error("expected one leader, got none in 5 s of virtual time", 2)
end

function Lab:check_no_leader()
    for i = 1, self.n do
        local st = self.c:status(i)
        if st.up and self.connected[i] and st.role == "leader" then
            error(("expected no leader among the connected servers, but %d claims to be one"):format(i), 2)
        end
    end
end

function Lab:check_terms()
    local term
    for i = 1, self.n do
        local st = self.c:status(i)
        if st.up and self.connected[i] then
            if term and st.term ~= term then error("servers disagree on the term", 2) end
            term = st.term
        end
    end
    return term
end

function Lab:finish() self.c:check() end

--- Runs every test of tests (a list of {name, fn(seed)}) for every seed; prints one line per
-- test and, for a failure, the seed, the error, the last events and the replay command.
-- Returns the number of failures.
function harness.run(script, tests)
    local failed = 0
    for _, t in ipairs(tests) do
        for _, seed in ipairs(harness.seeds()) do
            local lab_of_test
            local ok, err = xpcall(function() t[2](seed, function(l) lab_of_test = l end) end,
                                   debug.traceback)
            if ok then
                print(("ok   %s [seed %d]"):format(t[1], seed))
            else
                failed = failed + 1
                print(("FAIL %s [seed %d]: %s"):format(t[1], seed, tostring(err)))
                if lab_of_test then
                    print("last events:")
                    local trace = lab_of_test.c:trace()
                    for k = math.max(1, #trace - 40), #trace do print("  " .. trace[k]) end
                end
                print(("replay: LAB_SEED=%d LAB_RAFT=%s lua %s"):format(seed,
                    os.getenv("LAB_RAFT") or "raft", script))
            end
        end
    end
    print(("%d failed"):format(failed))
    return failed
end

return harness
