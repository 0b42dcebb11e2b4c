"""What a student writes for part A of the lab, and nothing more: the TODO (A) methods of the
skeleton (examples/lab/raft.py), written the straightforward way (own vote counted at once,
grants sent at once: part C will teach otherwise). test_lab.py shows it passes part A's tester
from the skeleton as shipped -- the lab's promise -- and, as it should, not part B."""

import raft as skeleton
from craft.lab import CANDIDATE, FOLLOWER, LEADER, Message


class Raft(skeleton.Raft):
    def tick(self):
        if self.role == LEADER:
            self.heartbeat_elapsed += 1
            if self.heartbeat_elapsed >= self.heartbeat_ticks:
                self.heartbeat_elapsed = 0
                self.send_heartbeats()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self.randomized_timeout:
                self.campaign()

    def campaign(self):
        self.role = CANDIDATE
        self.leader = 0
        self.term += 1
        self.voted_for = self.id
        self.save_hard_state()
        self.votes = {self.id}
        self.reset_election_timer()
        for p in self.peers:
            self.send(Message("RequestVote", p, self.term, last_log_index=self.log.last_index(),
                              last_log_term=self.log.last_term()))

    def receive(self, m):
        if m.term > self.term:
            self.become_follower(m.term, m.sender if m.type == "AppendEntries" else 0)
        elif m.term < self.term:
            self.answer_stale(m)
            return
        super().receive(m)

    def answer_stale(self, m):
        if m.type == "RequestVote":
            self.send(Message("RequestVoteResult", m.sender, self.term, granted=False))

    def become_follower(self, term, leader):
        if term > self.term:
            self.term = term
            self.voted_for = 0
            self.save_hard_state()
        self.role = FOLLOWER
        self.leader = leader
        self.reset_election_timer()

    def handle_request_vote(self, m):
        granted = self.voted_for in (0, m.sender)
        if granted:
            self.voted_for = m.sender
            self.save_hard_state()
            self.reset_election_timer()
        self.send(Message("RequestVoteResult", m.sender, self.term, granted=granted))

    def handle_request_vote_result(self, m):
        if self.role == CANDIDATE and m.granted:
            self.votes.add(m.sender)
            if len(self.votes) >= self.majority():
                self.become_leader()

    def become_leader(self):
        self.role = LEADER
        self.leader = self.id
        self.send_heartbeats()

    def send_heartbeats(self):
        for p in self.peers:
            self.send_append(p)

    def handle_append_entries(self, m):
        self.become_follower(m.term, m.sender)
