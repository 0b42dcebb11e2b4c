-- Scenario transcripts from Lua (docs/simulator.md, "Transcripts"): the corpus in
-- tests/transcripts gives, through raft.sim, the very outputs recorded there (the Python and C
-- suites run the same files through the same interpreter).
local sim = require "raft.sim"

local function corpus()
    local files = {}
    local p = io.popen("ls tests/transcripts/*.txt 2>/dev/null")
    for line in p:lines() do files[#files + 1] = line end
    p:close()
    return files
end

describe("transcripts", function()
    local files = corpus()

    it("holds the paper scenarios", function()
        assert.is_true(#files >= 9)
    end)

    for _, path in ipairs(files) do
        it("runs " .. path, function()
            local r = assert(sim.run_transcript(path))
            assert.are.equal(0, r.mismatches, r.report)
            local f = assert(io.open(path, "rb"))
            local text = f:read("*a")
            f:close()
            assert.are.equal(text, r.output)
        end)
    end

    it("reports a changed output with its line", function()
        local r = sim.run_transcript_text("add-nodes 3\n----\nok\n\nstatus 1\n----\nn1: nonsense\n")
        assert.are.equal(2, r.commands)
        assert.is_false(r.ok)
        assert.matches("line 5: status 1", r.report)
        assert.matches("n1: follower term=1", r.output)
    end)
end)
