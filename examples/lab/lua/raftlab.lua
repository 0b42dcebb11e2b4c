--- raftlab: bring your own Raft, in Lua (the twin of Python's craft.lab; docs/lab.md).
--
-- Write the protocol as a class whose nodes take the same inputs and give the same outputs as
-- craft's core, and raft.sim runs it in place of that core (sim.cluster{core = factory}):
-- node:step(message), node:tick(), node:propose(data) -> index, term (nil when not leading),
-- node:take_update(), node:persisted(seq), node:snapshot_taken(index, size). lab.Node below
-- is the base class: the state every Raft keeps (term, voted_for, leader, role, log, commit)
-- and the plumbing that turns what a node does into updates under persistence tickets:
-- self:send(m), self:send_when_durable(m), self:save_hard_state(), self:log_append(entries),
-- self:durable(seq), self:pending_seq(), self:majority(). Messages and entries are tables with
-- the fields of docs/simulator.md ("Messages, entries and events as values"); m.from is the
-- sender.
local lab = { FOLLOWER = "follower", CANDIDATE = "candidate", LEADER = "leader" }

-- A small seeded generator (Park-Miller), the same under Lua 5.4 and LuaJIT: a node draws its
-- timeouts from it, never from math.random, so that a seed replays a run.
local Rng = {}
Rng.__index = Rng

function lab.rng(seed)
    local s = seed % 2147483646 + 1
    return setmetatable({ s = s }, Rng)
end

--- An integer in [lo, hi].
function Rng:int(lo, hi)
    self.s = self.s * 16807 % 2147483647
    return lo + self.s % (hi - lo + 1)
end

local Log = {}
Log.__index = Log

function lab.log()
    return setmetatable({ entries = {}, offset = 0, offset_term = 0 }, Log)
end

function Log:last_index() return self.offset + #self.entries end
function Log:last_term()
    local n = #self.entries
    if n > 0 then return self.entries[n].term end
    return self.offset_term
end
function Log:first_index() return self.offset + 1 end
function Log:entry(i)
    if i > self.offset and i <= self:last_index() then return self.entries[i - self.offset] end
    return nil
end
--- The term of the entry at i (also at the snapshot's index); 0 when not held.
function Log:term_at(i)
    if i == self.offset then return self.offset_term end
    local e = self:entry(i)
    return e and e.term or 0
end
--- Entries lo..hi (inclusive) that the log holds.
function Log:slice(lo, hi)
    local out = {}
    if lo <= self.offset then lo = self.offset + 1 end
    if hi > self:last_index() then hi = self:last_index() end
    for i = lo, hi do out[#out + 1] = self.entries[i - self.offset] end
    return out
end

local Node = {}
Node.__index = Node
lab.Node = Node

--- A subclass of lab.Node (or of another class): local Raft = lab.class(); function
-- Raft:tick() ... end. Raft.new(id, config, boot) makes a node (the factory raft.sim calls).
function lab.class(parent)
    parent = parent or Node
    local cls = setmetatable({}, { __index = parent })
    cls.__index = cls
    cls.new = function(id, config, boot)
        local self = setmetatable({}, cls)
        self:init(id, config, boot)
        return self
    end
    return cls
end

function Node:init(id, config, boot)
    self.id = id
    self.config = config
    self.election_ticks = config.election_ticks
    self.heartbeat_ticks = config.heartbeat_ticks
    self.max_batch = config.max_batch_entries or 64
    self.rng = lab.rng(config.seed)
    self.voters = {}
    self.peers = {}
    local voters = boot.voters or (boot.bootstrap and boot.bootstrap.voters) or {}
    for _, v in ipairs(voters) do
        self.voters[#self.voters + 1] = v
        if v ~= id then self.peers[#self.peers + 1] = v end
    end
    self.role, self.leader = lab.FOLLOWER, 0
    self.term, self.voted_for = 0, 0
    self.log = lab.log()
    self.commit, self.applied = 0, 0
    self._outbox, self._deferred, self._writes = {}, {}, {}
    self._hs_dirty, self._unstable_from = false, 0
    self._seq, self._persisted_seq = 0, 0
    self.persisted_index = 0
    if #boot.entries == 0 and boot.snapshot == nil and boot.bootstrap ~= nil then
        -- A new cluster: the configuration is entry 1, of term 1, committed by construction.
        self.term = math.max(boot.hard_state.term, 1)
        self.voted_for = boot.hard_state.vote
        self:log_append({ { index = 1, term = 1, type = "config", data = boot.bootstrap.data } })
        self.commit = 1
        self:save_hard_state()
    else
        self:restore(boot)
        self.persisted_index = self.log:last_index()
        if self.commit < 1 and self.log:term_at(1) == 1 then self.commit = 1 end
    end
end

--- Boot from what the disk holds (part C). boot.hard_state, boot.snapshot, boot.entries.
function Node:restore(boot)
    error("restore(boot): part C", 2)
end

function Node:majority() return math.floor(#self.voters / 2) + 1 end

function Node:send(m)
    m.from = self.id
    self._outbox[#self._outbox + 1] = m
end

function Node:_dirty() return self._hs_dirty or self._unstable_from ~= 0 end

--- The ticket what has changed so far will be written under.
function Node:pending_seq()
    if self:_dirty() then return self._seq + 1 end
    return self._seq
end

function Node:durable(seq) return seq <= self._persisted_seq end

--- Sends m once everything changed so far is on disk, if the term has not changed meanwhile.
function Node:send_when_durable(m)
    m.from = self.id
    local need = self:pending_seq()
    if need <= self._persisted_seq then
        self._outbox[#self._outbox + 1] = m
    else
        self._deferred[#self._deferred + 1] = { need = need, m = m }
    end
end

function Node:save_hard_state() self._hs_dirty = true end

--- Puts entries in the log from entries[1].index on (removing what is there from that index).
function Node:log_append(entries)
    if #entries == 0 then return end
    local first = entries[1].index
    local log = self.log
    if first > log:last_index() + 1 or first <= log.offset then
        error(("log_append: entry %d does not follow the log (%d..%d)"):format(
            first, log.offset + 1, log:last_index()), 2)
    end
    for i = #log.entries, first - log.offset, -1 do log.entries[i] = nil end
    for k, e in ipairs(entries) do
        if e.index ~= first + k - 1 then error("log_append: indexes must be consecutive", 2) end
        log.entries[#log.entries + 1] = e
    end
    if self._unstable_from == 0 or first < self._unstable_from then self._unstable_from = first end
    if self.persisted_index >= first then self.persisted_index = first - 1 end
end

-- ---- what raft.sim calls --------------------------------------------------------------------

function Node:step(m) self:receive(m) end
function Node:receive(m) error("receive(m): your Raft's", 2) end
function Node:on_persisted() end

local function entry_copy(e)
    return { index = e.index, term = e.term, type = e.type or "command", data = e.data or "" }
end

function Node:take_update()
    local u, any = {}, false
    local last = self.log:last_index()
    if self:_dirty() then
        self._seq = self._seq + 1
        u.seq = self._seq
        local first = self._unstable_from
        self._writes[#self._writes + 1] = { seq = self._seq, first = first, last = last }
        if self._hs_dirty then
            u.hard_state = { term = self.term, vote = self.voted_for, commit = self.commit }
        end
        if first ~= 0 then
            u.entries = {}
            for _, e in ipairs(self.log:slice(first, last)) do u.entries[#u.entries + 1] = entry_copy(e) end
        end
        self._hs_dirty, self._unstable_from = false, 0
        any = true
    end
    local kept = {}
    for _, d in ipairs(self._deferred) do
        if d.need > self._persisted_seq then
            kept[#kept + 1] = d
        elseif d.m.term == self.term then
            self._outbox[#self._outbox + 1] = d.m
        end
    end
    self._deferred = kept
    if #self._outbox > 0 then
        u.messages = self._outbox
        self._outbox = {}
        any = true
    end
    local upto = math.min(self.commit, self.persisted_index)
    if upto > self.applied then
        u.committed = {}
        for _, e in ipairs(self.log:slice(self.applied + 1, upto)) do u.committed[#u.committed + 1] = entry_copy(e) end
        self.applied = upto
        any = true
    end
    if any then return u end
    return nil
end

function Node:persisted(seq)
    if seq <= self._persisted_seq then return end
    self._persisted_seq = seq
    local done, rest = nil, {}
    for _, w in ipairs(self._writes) do
        if w.seq <= seq then done = w else rest[#rest + 1] = w end
    end
    self._writes = rest
    if done then
        local p = done.last
        for _, w in ipairs(rest) do
            if w.first ~= 0 and w.first - 1 < p then p = w.first - 1 end
        end
        if self._unstable_from ~= 0 and self._unstable_from - 1 < p then p = self._unstable_from - 1 end
        self.persisted_index = math.min(p, self.log:last_index())
    end
    self:on_persisted()
end

function Node:snapshot_taken(index, size) return 0 end

function Node:status()
    return { role = self.role, term = self.term, vote = self.voted_for, leader = self.leader,
             commit = self.commit, first_index = self.log:first_index(),
             last_index = self.log:last_index(), last_term = self.log:last_term(),
             voters = self.voters }
end

function Node:term_at(i) return self.log:term_at(i) end

return lab
