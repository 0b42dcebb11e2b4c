--- What a student writes for part A of the Lua lab, and nothing more: the TODO (A) methods of
-- examples/lab/lua/raft.lua, written the straightforward way. spec/lab_spec.lua shows it
-- passes part A's tester from the skeleton as shipped. With LAB_MISTAKE=double-vote it grants
-- a second vote in a term (a planted mistake the tester must catch).
local lab = require "raftlab"
local Skeleton = require "raft"

local Raft = lab.class(Skeleton)

function Raft:tick()
    if self.role == lab.LEADER then
        self.heartbeat_elapsed = self.heartbeat_elapsed + 1
        if self.heartbeat_elapsed >= self.heartbeat_ticks then
            self.heartbeat_elapsed = 0
            self:send_heartbeats()
        end
    else
        self.election_elapsed = self.election_elapsed + 1
        if self.election_elapsed >= self.randomized_timeout then self:campaign() end
    end
end

function Raft:campaign()
    self.role, self.leader = lab.CANDIDATE, 0
    self.term = self.term + 1
    self.voted_for = self.id
    self:save_hard_state()
    self.votes = { [self.id] = true }
    self:reset_election_timer()
    for _, p in ipairs(self.peers) do
        self:send({ type = "RequestVote", to = p, term = self.term,
                    last_log_index = self.log:last_index(), last_log_term = self.log:last_term() })
    end
end

function Raft:receive(m)
    if m.term > self.term then
        self:become_follower(m.term, m.type == "AppendEntries" and m.from or 0)
    elseif m.term < self.term then
        if m.type == "RequestVote" then
            self:send({ type = "RequestVoteResult", to = m.from, term = self.term, granted = false })
        end
        return
    end
    Skeleton.receive(self, m)
end

function Raft:become_follower(term, leader)
    if term > self.term then
        self.term, self.voted_for = term, 0
        self:save_hard_state()
    end
    self.role, self.leader = lab.FOLLOWER, leader
    self:reset_election_timer()
end

local double_vote = os.getenv("LAB_MISTAKE") == "double-vote"

function Raft:handle_request_vote(m)
    local granted = self.voted_for == 0 or self.voted_for == m.from or
                    (double_vote and self.role == lab.FOLLOWER)
    if granted then
        self.voted_for = m.from
        self:save_hard_state()
        self:reset_election_timer()
    end
    self:send({ type = "RequestVoteResult", to = m.from, term = self.term, granted = granted })
end

function Raft:handle_request_vote_result(m)
    if self.role == lab.CANDIDATE and m.granted then
        self.votes[m.from] = true
        local n = 0
        for _ in pairs(self.votes) do n = n + 1 end
        if n >= self:majority() then self:become_leader() end
    end
end

function Raft:become_leader()
    self.role, self.leader = lab.LEADER, self.id
    self:send_heartbeats()
end

function Raft:send_heartbeats()
    for _, p in ipairs(self.peers) do
        self:send({ type = "AppendEntries", to = p, term = self.term,
                    prev_index = self.log:last_index(), prev_term = self.log:last_term(),
                    entries = {}, commit = self.commit })
    end
end

function Raft:handle_append_entries(m)
    self:become_follower(m.term, m.from)
end

return Raft
