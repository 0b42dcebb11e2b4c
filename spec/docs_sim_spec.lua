-- The Lua examples of docs/simulator.md run as written (each ```lua block).
local f = assert(io.open("docs/simulator.md", "rb"))
local doc = f:read("*a")
f:close()

describe("docs/simulator.md", function()
    local blocks = {}
    for code in doc:gmatch("```lua\n(.-)```") do blocks[#blocks + 1] = code end

    it("has Lua examples", function()
        assert.is_true(#blocks >= 1)
    end)

    for k, code in ipairs(blocks) do
        it("runs Lua block " .. k, function()
            local fn = assert((loadstring or load)(code, "docs/simulator.md lua block " .. k))
            fn()
        end)
    end
end)
