--- Your Raft, in Lua: part A (leader election) of the lab (docs/lab.md). Fill in the TODOs,
-- then run the tester:
--
--     lua5.4 examples/lab/lua/test_election.lua        (or luajit)
--
-- raft.sim runs this class in place of craft's core: every server is Raft.new(id, config,
-- boot), and the simulator calls node:step(m), node:tick(), node:propose(data),
-- node:take_update(), node:persisted(seq) as it calls craft's core. raftlab.lua (lab.Node)
-- holds term, voted_for, leader, role, log, commit and gives you self:send(m),
-- self:send_when_durable(m), self:save_hard_state(), self:log_append(entries), self:durable(seq),
-- self:pending_seq(), self:majority(), and self.rng:int(lo, hi) (the only randomness to use,
-- so that a seed replays a run). Messages are tables: type, from, to, term and the type's
-- fields (RequestVote: last_log_index, last_log_term; RequestVoteResult: granted;
-- AppendEntries: prev_index, prev_term, entries, commit). The paper's Figure 2 is the
-- specification. Parts B to D follow the Python skeleton (examples/lab/raft.py) method by
-- method; their testers are in Python.
local lab = require "raftlab"

local Raft = lab.class()

function Raft:init(id, config, boot)
    -- Volatile state of your own (lost at a crash). Add what you need.
    self.election_elapsed = 0
    self.heartbeat_elapsed = 0
    self.randomized_timeout = 0
    self.votes = {}
    lab.Node.init(self, id, config, boot)
    self:reset_election_timer()
end

--- A new randomized election timeout in [election_ticks, 2 * election_ticks).
function Raft:reset_election_timer()
    self.election_elapsed = 0
    self.randomized_timeout = self.rng:int(self.election_ticks, 2 * self.election_ticks - 1)
end

-- ---- Part A: leader election ----------------------------------------------------------------

--- TODO (A): a follower or candidate counts ticks and campaigns when its randomized election
-- timeout expires; a leader sends heartbeats every heartbeat_ticks.
function Raft:tick()
    error("TODO (part A): tick", 0)
end

--- TODO (A): become candidate: a new term, vote for yourself (self:save_hard_state(): the term
-- and the vote must reach the disk), ask every peer for its vote: a RequestVote with
-- last_log_index = self.log:last_index() and last_log_term = self.log:last_term().
function Raft:campaign()
    error("TODO (part A): campaign", 0)
end

--- A message arrived. TODO (A): a higher term makes you a follower of that term; a request of
-- a lower term is refused with your term and otherwise ignored. Then dispatch by type.
function Raft:receive(m)
    local handler = ({
        RequestVote = self.handle_request_vote,
        RequestVoteResult = self.handle_request_vote_result,
        AppendEntries = self.handle_append_entries,
    })[m.type]
    if handler then handler(self, m) end
end

--- TODO (A): follow leader (0: unknown) in term; a new term clears your vote (save it).
function Raft:become_follower(term, leader)
    error("TODO (part A): become_follower", 0)
end

--- TODO (A): grant at most one vote per term (save it) and reset your election timer when you
-- grant; answer with a RequestVoteResult {granted = true or false}.
function Raft:handle_request_vote(m)
    error("TODO (part A): handle_request_vote", 0)
end

--- TODO (A): count the grants of the current term; a majority makes you leader.
function Raft:handle_request_vote_result(m)
    error("TODO (part A): handle_request_vote_result", 0)
end

--- TODO (A): lead (role, leader), and tell everyone at once with a heartbeat.
function Raft:become_leader()
    error("TODO (part A): become_leader", 0)
end

--- TODO (A): an empty AppendEntries to every peer (prev_index = your last index, prev_term its
-- term, entries = {}, commit = your commit index).
function Raft:send_heartbeats()
    error("TODO (part A): send_heartbeats", 0)
end

--- TODO (A): the sender leads this term: follow it and reset your election timer.
function Raft:handle_append_entries(m)
    error("TODO (part A): handle_append_entries", 0)
end

-- ---- Parts B to D (see examples/lab/raft.py) --------------------------------------------------

--- Part B: on the leader, append {index, term, type = "command", data} and replicate it;
-- return index, term. Until then: nil (this node does not take commands).
function Raft:propose(data)
    return nil
end

return Raft
