-- A durable log store written in Lua (raft.node{log_store = ...}, lua/raft/store.lua): what a
-- user who wants their own store would write with Lua's io library, and the one the power-loss
-- campaign runs Lua nodes on (powercut.py --store lua). Lua 5.4 (string.pack, integers).
--
-- Lua's standard library cannot make a write durable (no fsync), truncate a file or create a
-- directory: the small C module "durable" (tests/powerloss/lua_durable.c) gives fsync,
-- fdatasync, fsync of a directory and mkdir; a truncation is a rewrite. The files and their
-- formats are file_store.py's, so either store reads the other's directory:
--
--     hard   term, vote, commit + CRC32, replaced whole (hard.tmp, fsync, rename, fsync dir)
--     log    header (magic, first index, term before it), then records (length, CRC32, body:
--            index, term, type, data); an append is one write and one fdatasync; truncation,
--            compaction and a torn tail found on open rewrite it whole (log.tmp, rename)
--     snap   header (index, term, conf_index, size, conf, CRC32), data, CRC32 of the data
--
-- file_store.open(dir [, {sync = false}]) -> store. sync = false skips every fsync (a negative
-- control: it must lose writes).
local durable = require "durable"

local M = {}

-- CRC-32 (IEEE 802.3, zlib's), table-driven.
local CRC = {}
for i = 0, 255 do
    local c = i
    for _ = 1, 8 do
        if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
    end
    CRC[i] = c
end
local function crc32(s, c)
    c = (c or 0) ~ 0xFFFFFFFF
    for i = 1, #s do
        c = CRC[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8)
    end
    return c ~ 0xFFFFFFFF
end
M.crc32 = crc32

local LOG_MAGIC = "PYLOG1\0\0"
local LOG_HEAD = "<c8I8I8"          -- 24 bytes
local REC_HEAD = "<I4I4"            -- body length, crc
local REC_BODY = "<I8I8B"           -- index, term, type (17 bytes), then data
local HARD = "<I8I8I8"              -- 24 bytes, then crc
local SNAP_HEAD = "<I8I8I8I8I4"     -- index, term, conf_index, size, conf length (36 bytes)

local Store = {}
Store.__index = Store

local function check(ok, err)
    if not ok then error(err, 2) end
    return ok
end

function Store:_path(name) return self.dir .. "/" .. name end

function Store:_fsync(f)
    if self.sync then check(durable.fsync(f)) end
end

function Store:_fdatasync(f)
    if self.sync then check(durable.fdatasync(f)) end
end

function Store:_fsync_dir(path)
    if self.sync then check(durable.fsync_dir(path or self.dir)) end
end

-- Writes name whole: name.tmp, fsync, rename over name, fsync the directory.
function Store:_replace(name, data)
    local tmp = self:_path(name .. ".tmp")
    local f = check(io.open(tmp, "wb"))
    check(f:write(data))
    self:_fsync(f) -- flushes first
    f:close()
    check(os.rename(tmp, self:_path(name)))
    self:_fsync_dir()
end

local function read_all(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

-- ---- hard state ---------------------------------------------------------------------------

function Store:_load_hard()
    local b = read_all(self:_path("hard"))
    if not b then return { 0, 0, 0 } end
    if #b ~= 28 or crc32(b:sub(1, 24)) ~= string.unpack("<I4", b, 25) then
        error(self:_path("hard") .. ": bad checksum (it is written whole and renamed into place, so this is corruption)", 0)
    end
    local t, v, c = string.unpack(HARD, b)
    return { t, v, c }
end

function Store:load_hard_state()
    return self._hard[1], self._hard[2], self._hard[3]
end

function Store:save_hard_state(term, vote, commit)
    local b = string.pack(HARD, term, vote, commit)
    self:_replace("hard", b .. string.pack("<I4", crc32(b)))
    self._hard = { term, vote, commit }
end

-- ---- snapshot -----------------------------------------------------------------------------

function Store:_load_snapshot()
    local b = read_all(self:_path("snap"))
    if not b then return end
    local bad = self:_path("snap") .. ": bad checksum (it is fsynced before it is renamed into place, so this is corruption)"
    if #b < 36 then error(bad, 0) end
    local index, term, conf_index, size, conf_len = string.unpack(SNAP_HEAD, b)
    local head_len = 36 + conf_len + 4
    if #b ~= head_len + size + 4
        or crc32(b:sub(1, head_len - 4)) ~= string.unpack("<I4", b, head_len - 3)
        or crc32(b:sub(head_len + 1, head_len + size)) ~= string.unpack("<I4", b, #b - 3) then
        error(bad, 0)
    end
    self._snap = { index = index, term = term, conf_index = conf_index, size = size,
                   conf = b:sub(37, 36 + conf_len) }
    self._snap_at = head_len
end

local Writer = {}
Writer.__index = Writer
function Writer:write(data)
    check(self.f:write(data))
    self.size = self.size + #data
    self.crc = crc32(data, self.crc)
end

function Store:snapshot_begin(meta)
    if self._snap and meta.index < self._snap.index then
        error("snapshot_begin: older than the latest snapshot", 0)
    end
    local w = setmetatable({ meta = meta, path = self:_path("snap.tmp"), size = 0, crc = 0 }, Writer)
    w.f = check(io.open(w.path, "wb"))
    -- The header holds the size and the data's CRC: room for it now, written at commit.
    w.head_len = 36 + #meta.conf + 4
    check(w.f:write(string.rep("\0", w.head_len)))
    return w
end

function Store:snapshot_commit(w)
    local m = w.meta
    if m.size ~= 0 and m.size ~= w.size then
        self:snapshot_abort(w)
        error(("snapshot_commit: %d bytes written, %d announced"):format(w.size, m.size), 0)
    end
    check(w.f:write(string.pack("<I4", w.crc)))
    local head = string.pack(SNAP_HEAD, m.index, m.term, m.conf_index, w.size, #m.conf) .. m.conf
    check(w.f:seek("set", 0))
    check(w.f:write(head, string.pack("<I4", crc32(head))))
    self:_fsync(w.f)
    w.f:close()
    check(os.rename(w.path, self:_path("snap")))
    self:_fsync_dir()
    self._snap = { index = m.index, term = m.term, conf_index = m.conf_index, size = w.size, conf = m.conf }
    self._snap_at = w.head_len
    -- Raft paper, Figure 13, steps 6 and 7: keep the log only if it holds the snapshot's last
    -- entry with the snapshot's term.
    if not self:_holds(m.index, m.term) then
        self:_rewrite_log(m.index + 1, m.term, {})
    end
end

function Store:snapshot_abort(w)
    w.f:close()
    os.remove(w.path)
end

function Store:snapshot_meta()
    local s = self._snap
    if not s then return nil end
    return { index = s.index, term = s.term, conf_index = s.conf_index, size = s.size, conf = s.conf }
end

local Reader = {}
Reader.__index = Reader
function Reader:read(offset, n)
    n = math.min(n, self.size - offset)
    if n <= 0 then return "" end
    check(self.f:seek("set", self.at + offset))
    return self.f:read(n) or ""
end
function Reader:close() self.f:close() end

function Store:snapshot_open()
    if not self._snap then return nil end
    -- The open handle keeps reading this snapshot after a newer one is renamed over it.
    return setmetatable({ f = check(io.open(self:_path("snap"), "rb")), at = self._snap_at,
                          size = self._snap.size }, Reader)
end

-- ---- the log ------------------------------------------------------------------------------

function Store:_last() return self._first + #self._log - 1 end

function Store:_holds(index, term)
    if index == self._first - 1 then return self._prev_term == term end
    if index >= self._first and index <= self:_last() then
        return self._log[index - self._first + 1].term == term
    end
    return false
end

local function record(e)
    local body = string.pack(REC_BODY, e.index, e.term, e.type) .. e.data
    return string.pack(REC_HEAD, #body, crc32(body)) .. body
end

-- The log replaced whole, atomically.
function Store:_rewrite_log(first, prev_term, entries)
    local parts = { string.pack(LOG_HEAD, LOG_MAGIC, first, prev_term) }
    local at = 24
    for i, e in ipairs(entries) do
        parts[#parts + 1] = record(e)
        at = at + #parts[#parts]
    end
    self:_replace("log", table.concat(parts))
    if self._f then self._f:close() end
    self._f = check(io.open(self:_path("log"), "r+b"))
    self._first, self._prev_term, self._log, self._end = first, prev_term, entries, at
end

function Store:_load_log()
    local path = self:_path("log")
    local b = read_all(path)
    if not b then
        self:_rewrite_log(1, 0, {})
    else
        if #b < 24 or b:sub(1, 8) ~= LOG_MAGIC then
            error(path .. ": bad header (it is written whole and renamed into place, so this is corruption)", 0)
        end
        local _, first, prev = string.unpack(LOG_HEAD, b)
        self._first, self._prev_term, self._log = first, prev, {}
        local p, expect = 25, first
        while p + 8 <= #b + 1 do
            local n, crc = string.unpack(REC_HEAD, b, p)
            local body = b:sub(p + 8, p + 7 + n)
            if n < 17 or #body ~= n or crc32(body) ~= crc then break end
            local index, term, typ = string.unpack(REC_BODY, body)
            if index ~= expect then
                error(("%s: entry %d at offset %d, expected %d"):format(path, index, p - 1, expect), 0)
            end
            self._log[#self._log + 1] = { index = index, term = term, type = typ, data = body:sub(18) }
            expect = expect + 1
            p = p + 8 + n
        end
        self._end = p - 1
        if self._end < #b then
            -- A torn last append (never acknowledged): rewritten without it.
            self:_rewrite_log(self._first, self._prev_term, self._log)
        else
            self._f = check(io.open(path, "r+b"))
        end
    end
    local s = self._snap
    if s and s.index >= self._first - 1 and not self:_holds(s.index, s.term) then
        -- A crash between a snapshot's rename and the log's rewrite: finish it. (A snapshot
        -- behind the compaction point is older than the log: nothing to do.)
        self:_rewrite_log(s.index + 1, s.term, {})
    end
end

function Store:bounds() return self._first, self:_last() end

function Store:append(entries)
    local expect = self:_last() + 1
    local prev = #self._log > 0 and self._log[#self._log].term or self._prev_term
    local recs = {}
    for i, e in ipairs(entries) do
        if e.index ~= expect or e.term == 0 or e.term < prev then
            error(("append: entry %d/%d does not follow %d/%d"):format(e.index, e.term, expect - 1, prev), 0)
        end
        expect, prev = expect + 1, e.term
        recs[i] = record(e)
    end
    local data = table.concat(recs)
    check(self._f:seek("set", self._end))
    check(self._f:write(data))
    self:_fdatasync(self._f)
    for _, e in ipairs(entries) do
        self._log[#self._log + 1] = { index = e.index, term = e.term, type = e.type, data = e.data }
    end
    self._end = self._end + #data
end

function Store:truncate(from)
    if from == 0 then error("truncate(0)", 0) end
    if from > self:_last() then return end
    if from < self._first then return nil, "compacted" end
    local keep = {}
    for i = 1, from - self._first do keep[i] = self._log[i] end
    self:_rewrite_log(self._first, self._prev_term, keep)
end

function Store:compact(upto)
    if upto < self._first then return end
    if upto > self:_last() then
        local s = self._snap
        self:_rewrite_log(upto + 1, (s and s.index == upto) and s.term or 0, {})
    else
        local keep = {}
        for i = upto - self._first + 2, #self._log do keep[#keep + 1] = self._log[i] end
        self:_rewrite_log(upto + 1, self._log[upto - self._first + 1].term, keep)
    end
end

function Store:entries(lo, hi)
    if lo < self._first then return nil, "compacted" end
    if hi > self:_last() then return nil, "unavailable" end
    local out, base = {}, self._first - 1
    for i = lo, hi do out[#out + 1] = self._log[i - base] end
    return out
end

function Store:term(index)
    if index == 0 then return 0 end
    if index == self._first - 1 then return self._prev_term end
    if index < self._first then return nil, "compacted" end
    if index > self:_last() then return nil, "unavailable" end
    return self._log[index - self._first + 1].term
end

function Store:close()
    if self._f then self._f:close() end
    self._f = nil
end

function M.open(dir, opts)
    local self = setmetatable({ dir = dir, sync = not (opts and opts.sync == false) }, Store)
    -- The directory, and its name in the parent, durable before anything is put in it.
    check(durable.mkdir(dir))
    self:_fsync_dir(dir:match("^(.*)/[^/]+/*$") or ".")
    for _, name in ipairs({ "hard.tmp", "log.tmp", "snap.tmp" }) do
        os.remove(self:_path(name)) -- never renamed into place: never promised
    end
    self._hard = self:_load_hard()
    self:_load_snapshot()
    self:_load_log()
    return self
end

return M
