--- raft.store: log stores written in Lua, and the interface one implements.
--
-- A log store keeps a node's Raft log, its hard state (term, vote, commit hint) and its latest
-- snapshot. By default a node uses craft's durable C store in data_dir; pass
-- raft.node{..., log_store = store} to use a table of your own instead. It is the C storage
-- interface (struct craft_store in c/include/craft.h), with the method names of the Python
-- binding's log stores (python/craft/store.py). Every hook runs on the loop thread (calls the
-- runtime makes on its disk thread are handed over and waited for), one at a time, and must be
-- durable when it returns. Hooks are called as methods: store:append(entries).
--
-- Entries are tables {index =, term =, type =, data = string}; snapshot metadata is a table
-- {index =, term =, conf_index =, size =, conf = string} where conf is the configuration's
-- encoded bytes, opaque to the store.
--
--     load_hard_state() -> term, vote, commit          0, 0, 0 when there is none
--     save_hard_state(term, vote, commit)
--     bounds() -> first, last                          empty log: first == last + 1
--     append(entries)                                  entries[1].index == last + 1
--     truncate(from_index)                             removes every entry >= from_index
--     compact(upto)                                    removes every entry <= upto
--     entries(lo, hi) -> {entry, ...}                  or nil, "compacted" / nil, "unavailable"
--     term(index) -> term                              the same; also the last compacted entry
--     snapshot_begin(meta) -> writer                   writer:write(data) for each chunk
--     snapshot_commit(writer)                          durable and the latest; fix up the log
--     snapshot_abort(writer)                           optional
--     snapshot_meta() -> meta or nil
--     snapshot_open() -> reader or nil                 reader:read(offset, n) -> string ("" or
--                                                      nil at the end); reader:close() optional
--     close()                                          optional
--
-- nil, "compacted" and nil, "unavailable" are answers (craft's ECOMPACTED / EUNAVAILABLE). An
-- error raised by a hook, or nil with any other message, means the store failed: the node
-- stops (event "stopped"), and the error with its traceback goes to raft.on_error's handler or
-- is raised by raft.run / raft.poll. The exact rules are those listed at the top of
-- c/include/craft/store.h; memory_store follows them and is the template for a store of your
-- own.

local store = {}

local MemoryStore = {}
MemoryStore.__index = MemoryStore
store.MemoryStore = MemoryStore

--- A log store in memory: nothing survives the process. For tests, demos, and as the template
-- of a store of your own (a node restarted with the same table keeps its log).
function store.memory_store()
    return setmetatable({
        _hard = { 0, 0, 0 },
        _log = {},             -- _log[i - _first + 1] = entry at index i
        _first = 1,            -- index of the first entry held (compaction point + 1)
        _compacted_term = 0,   -- term of the entry at _first - 1
        _snapshot = nil,       -- { meta = {...}, data = string }
        calls = 0,             -- how many calls the node made (tests look at it)
    }, MemoryStore)
end

local function copy_entry(e)
    return { index = e.index, term = e.term, type = e.type, data = e.data }
end

-- ---- hard state ---------------------------------------------------------------------------

function MemoryStore:load_hard_state()
    self.calls = self.calls + 1
    return self._hard[1], self._hard[2], self._hard[3]
end

function MemoryStore:save_hard_state(term, vote, commit)
    self.calls = self.calls + 1
    self._hard = { term, vote, commit }
end

-- ---- the log ------------------------------------------------------------------------------

function MemoryStore:_last()
    return self._first + #self._log - 1
end

function MemoryStore:bounds()
    self.calls = self.calls + 1
    return self._first, self:_last()
end

function MemoryStore:append(entries)
    self.calls = self.calls + 1
    local log = self._log
    local expect = self:_last() + 1
    local prev = #log > 0 and log[#log].term or self._compacted_term
    for _, e in ipairs(entries) do
        if e.index ~= expect or e.term == 0 or e.term < prev then
            error(("append: entry %d/%d does not follow %d/%d"):format(e.index, e.term, expect - 1, prev), 0)
        end
        expect = expect + 1
        prev = e.term
    end
    for _, e in ipairs(entries) do
        log[#log + 1] = copy_entry(e)
    end
end

function MemoryStore:truncate(from)
    self.calls = self.calls + 1
    if from == 0 then error("truncate(0)", 0) end
    if from > self:_last() then return end
    if from < self._first then return nil, "compacted" end
    local log = self._log
    for i = #log, from - self._first + 1, -1 do log[i] = nil end
end

function MemoryStore:compact(upto)
    self.calls = self.calls + 1
    if upto < self._first then return end
    if upto > self:_last() then
        local snap = self._snapshot
        self._compacted_term = (snap and snap.meta.index == upto) and snap.meta.term or 0
        self._log = {}
    else
        local log, keep = self._log, {}
        self._compacted_term = log[upto - self._first + 1].term
        for i = upto - self._first + 2, #log do keep[#keep + 1] = log[i] end
        self._log = keep
    end
    self._first = upto + 1
end

function MemoryStore:entries(lo, hi)
    self.calls = self.calls + 1
    if lo < self._first then return nil, "compacted" end
    if hi > self:_last() then return nil, "unavailable" end
    local out, log, base = {}, self._log, self._first - 1
    for i = lo, hi do out[#out + 1] = log[i - base] end
    return out
end

function MemoryStore:term(index)
    self.calls = self.calls + 1
    if index == 0 then return 0 end
    if index == self._first - 1 then return self._compacted_term end
    if index < self._first then return nil, "compacted" end
    if index > self:_last() then return nil, "unavailable" end
    return self._log[index - self._first + 1].term
end

-- ---- snapshots ----------------------------------------------------------------------------

local Writer = {}
Writer.__index = Writer
function Writer:write(data) self.chunks[#self.chunks + 1] = data end

local Reader = {}
Reader.__index = Reader
function Reader:read(offset, n) return self.data:sub(offset + 1, offset + n) end
function Reader:close() end

function MemoryStore:snapshot_begin(meta)
    self.calls = self.calls + 1
    if self._snapshot and meta.index < self._snapshot.meta.index then
        error("snapshot_begin: older than the latest snapshot", 0)
    end
    return setmetatable({ meta = meta, chunks = {} }, Writer)
end

function MemoryStore:snapshot_commit(w)
    self.calls = self.calls + 1
    local data = table.concat(w.chunks)
    local m = w.meta
    if m.size ~= 0 and m.size ~= #data then
        error(("snapshot_commit: %d bytes written, %d announced"):format(#data, m.size), 0)
    end
    self._snapshot = {
        meta = { index = m.index, term = m.term, conf_index = m.conf_index, size = #data, conf = m.conf },
        data = data,
    }
    -- Raft paper, Figure 13, steps 6 and 7: keep the log only if it holds the snapshot's last
    -- entry with the snapshot's term.
    local holds = false
    if self._first - 1 == m.index then
        holds = self._compacted_term == m.term
    elseif self._first <= m.index and m.index <= self:_last() then
        holds = self._log[m.index - self._first + 1].term == m.term
    end
    if not holds then
        self._log = {}
        self._first = m.index + 1
        self._compacted_term = m.term
    end
end

function MemoryStore:snapshot_abort(w)
    self.calls = self.calls + 1
end

function MemoryStore:snapshot_meta()
    self.calls = self.calls + 1
    local s = self._snapshot
    if not s then return nil end
    local m = s.meta
    return { index = m.index, term = m.term, conf_index = m.conf_index, size = m.size, conf = m.conf }
end

function MemoryStore:snapshot_open()
    self.calls = self.calls + 1
    local s = self._snapshot
    if not s then return nil end
    return setmetatable({ data = s.data }, Reader) -- keeps reading this one after a newer commit
end

function MemoryStore:close() end

--- The hooks raft.node requires of a log_store (snapshot_abort and close are optional).
store.REQUIRED = {
    "load_hard_state", "save_hard_state", "bounds", "append", "truncate", "compact", "entries",
    "term", "snapshot_begin", "snapshot_commit", "snapshot_meta", "snapshot_open",
}

return store
