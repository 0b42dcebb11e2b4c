"""The reference solution of the Raft lab (examples/lab): every TODO of examples/lab/raft.py
done, kept here in the test tree and not in the student files. It proves the tester sound:
this Raft passes every part, and each planted mistake (lab_planted.py) fails the part it
should. It follows the Raft paper's Figure 2 and the lab's method names one for one, so that
tests can also graft one part of it onto the student skeleton.

Elections without pre-vote (as in the paper); no no-op on election (as in MIT 6.5840: a new
leader commits older entries with the next command); conflict hints for backtracking (the end
of paper 5.3); one InstallSnapshot chunk per snapshot."""

from craft.lab import CANDIDATE, FOLLOWER, LEADER, Entry, Message, RaftNode


class Raft(RaftNode):
    def __init__(self, id, config, boot):
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = 0
        self.votes = set()
        self.vote_seq = 0
        self.next_index = {}
        self.match_index = {}
        super().__init__(id, config, boot)
        self.reset_election_timer()

    def reset_election_timer(self):
        self.election_elapsed = 0
        self.randomized_timeout = self.rng.randint(self.election_ticks, 2 * self.election_ticks - 1)

    # ---- Part A: leader election -------------------------------------------------------------

    def tick(self):
        if self.role == LEADER:
            self.heartbeat_elapsed += 1
            if self.heartbeat_elapsed >= self.heartbeat_ticks:
                self.heartbeat_elapsed = 0
                self.send_heartbeats()
            return
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_timeout:
            self.campaign()

    def campaign(self):
        self.role = CANDIDATE
        self.leader = 0
        self.term += 1
        self.voted_for = self.id
        self.save_hard_state()
        self.vote_seq = self.pending_seq()
        self.votes = set()
        self.reset_election_timer()
        for p in self.peers:
            self.send(Message("RequestVote", p, self.term, last_log_index=self.log.last_index(),
                              last_log_term=self.log.last_term()))
        self.count_own_vote()

    def receive(self, m):
        if m.term > self.term:
            from_leader = m.type in ("AppendEntries", "InstallSnapshot")
            self.become_follower(m.term, m.sender if from_leader else 0)
        elif m.term < self.term:
            self.answer_stale(m)
            return
        handler = {
            "RequestVote": self.handle_request_vote,
            "RequestVoteResult": self.handle_request_vote_result,
            "AppendEntries": self.handle_append_entries,
            "AppendEntriesResult": self.handle_append_entries_result,
            "InstallSnapshot": self.handle_install_snapshot,
            "InstallSnapshotResult": self.handle_install_snapshot_result,
        }.get(m.type)
        if handler is not None:
            handler(m)

    def answer_stale(self, m):
        """Figure 2: reply false to a stale request, with our term, so the sender catches up."""
        if m.type == "RequestVote":
            self.send(Message("RequestVoteResult", m.sender, self.term, granted=False))
        elif m.type == "AppendEntries":
            self.send(Message("AppendEntriesResult", m.sender, self.term, rejected=True,
                              index=m.prev_index, last_index=self.log.last_index()))
        elif m.type == "InstallSnapshot":
            self.send(Message("InstallSnapshotResult", m.sender, self.term,
                              index=m.snapshot_index, rejected=True))

    def become_follower(self, term, leader):
        if term > self.term:
            self.term = term
            self.voted_for = 0
            self.save_hard_state()
        self.role = FOLLOWER
        self.leader = leader
        self.reset_election_timer()

    def log_up_to_date(self, m):
        """Paper 5.4.1: the candidate's log is at least as up to date as ours."""
        mine = (self.log.last_term(), self.log.last_index())
        return (m.last_log_term, m.last_log_index) >= mine

    def handle_request_vote(self, m):
        if self.voted_for in (0, m.sender) and self.role != LEADER and self.log_up_to_date(m):
            if self.voted_for != m.sender:
                self.voted_for = m.sender
                self.save_hard_state()
            self.reset_election_timer()
            self.reply_vote(m, True)
        else:
            self.send(Message("RequestVoteResult", m.sender, self.term, granted=False))

    def reply_vote(self, m, granted):
        # The grant promises the vote: it may only leave once the vote is on disk.
        self.send_when_durable(Message("RequestVoteResult", m.sender, self.term, granted=granted))

    def handle_request_vote_result(self, m):
        if self.role != CANDIDATE or m.term != self.term or not m.granted:
            return
        self.votes.add(m.sender)
        self.check_votes()

    def check_votes(self):
        if self.role == CANDIDATE and len(self.votes) >= self.majority():
            self.become_leader()

    def become_leader(self):
        self.role = LEADER
        self.leader = self.id
        self.heartbeat_elapsed = 0
        last = self.log.last_index()
        self.next_index = {p: last + 1 for p in self.peers}
        self.match_index = {p: 0 for p in self.peers}
        self.send_heartbeats()

    def send_heartbeats(self):
        for p in self.peers:
            self.send_append(p)

    # ---- Part B: log replication -------------------------------------------------------------

    def propose(self, data):
        if self.role != LEADER:
            return None
        e = Entry(self.log.last_index() + 1, self.term, data)
        self.log_append([e])
        for p in self.peers:
            if self.next_index[p] == e.index:
                self.send_append(p)
        return e.index, e.term

    def send_append(self, p):
        nxt = self.next_index[p]
        if nxt <= self.log.offset:
            self.send_snapshot(p)
            return
        prev = nxt - 1
        entries = self.log.slice(nxt, nxt + self.max_batch - 1)
        self.send(Message("AppendEntries", p, self.term, prev_index=prev,
                          prev_term=self.log.term_at(prev), entries=entries, commit=self.commit))

    def handle_append_entries(self, m):
        self.become_follower(m.term, m.sender)
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < self.log.offset:
            # The start is in our snapshot, committed: it matches.
            entries = [e for e in entries if e.index > self.log.offset]
            prev, prev_term = self.log.offset, self.log.offset_term
            if entries and entries[0].index != prev + 1:
                entries = []
        if prev > self.log.last_index() or self.log.term_at(prev) != prev_term:
            hint = min(prev, self.log.last_index())
            while hint > self.log.offset and self.log.term_at(hint) > prev_term:
                hint -= 1
            self.send(Message("AppendEntriesResult", m.sender, self.term, rejected=True,
                              index=m.prev_index, hint_index=hint,
                              hint_term=self.log.term_at(hint),
                              last_index=self.log.last_index()))
            return
        # Skip what we hold already; from the first conflict on, the leader's entries win.
        for k, e in enumerate(entries):
            if self.log.term_at(e.index) != e.term:
                self.log_append(entries[k:])
                break
        last_new = prev + len(entries)
        if m.commit > self.commit:
            self.commit = max(self.commit, min(m.commit, last_new))
        self.reply_append(m, last_new)

    def reply_append(self, m, last_new):
        # "I store your entries up to last_new": true only once they are on disk.
        self.send_when_durable(Message("AppendEntriesResult", m.sender, self.term,
                                       rejected=False, index=last_new,
                                       last_index=self.log.last_index()))

    def handle_append_entries_result(self, m):
        if self.role != LEADER or m.term != self.term:
            return
        p = m.sender
        if m.rejected:
            if m.index != self.next_index[p] - 1:
                return  # the answer to an older probe
            self.next_index[p] = max(self.match_index[p] + 1, self.backtrack(m))
            self.send_append(p)
            return
        if m.index > self.match_index[p]:
            self.match_index[p] = m.index
        self.next_index[p] = max(self.next_index[p], m.index + 1)
        self.advance_commit()
        if self.next_index[p] <= self.log.last_index():
            self.send_append(p)

    def backtrack(self, m):
        """The next index to try after a rejection: skip every entry the follower's hint shows
        cannot match (etcd's findConflictByTerm, on the leader's side)."""
        i = min(m.hint_index, self.log.last_index())
        while i > self.log.offset and self.log.term_at(i) > m.hint_term:
            i -= 1
        return min(m.index, i + 1)

    def advance_commit(self):
        for n in range(self.log.last_index(), self.commit, -1):
            if not self.may_commit(n):
                break
            stored = (1 if self.persisted_index >= n else 0) + \
                sum(1 for p in self.peers if self.match_index[p] >= n)
            if stored >= self.majority():
                self.commit = n
                for p in self.peers:
                    self.send_append(p)  # followers learn the new commit index
                return

    def may_commit(self, n):
        """Paper 5.4.2: only an entry of the current term is committed by counting replicas."""
        return self.log.term_at(n) == self.term

    # ---- Part C: persistence -----------------------------------------------------------------

    def restore(self, boot):
        hs = boot["hard_state"]
        self.term = hs["term"]
        self.voted_for = hs["vote"]
        snap = boot["snapshot"]
        if snap is not None:
            self.log.offset = snap["index"]
            self.log.offset_term = snap["term"]
            self.snapshot = dict(snap)
            self.commit = self.applied = snap["index"]
        self.log.entries = [Entry.from_dict(e) for e in boot["entries"]
                            if e["index"] > self.log.offset]
        # The commit hint is safe to start from (the simulator keeps it below what the log
        # holds durably); it only saves waiting for the leader to say it again.
        self.commit = max(self.commit, min(hs["commit"], self.log.last_index()))

    def count_own_vote(self):
        # A candidate's own vote counts only once its disk holds it (Figure 2).
        if self.role == CANDIDATE and self.voted_for == self.id and self.durable(self.vote_seq):
            self.votes.add(self.id)
            self.check_votes()

    def on_persisted(self):
        self.count_own_vote()
        if self.role == LEADER:
            self.advance_commit()  # our own entries count once durable

    # ---- Part D: snapshots -------------------------------------------------------------------

    def compact_log(self, index):
        if index <= self.log.offset:
            return 0
        self.log.entries = self.log.slice(index + 1, self.log.last_index())
        self.log.offset_term = self.snapshot["term"]
        self.log.offset = index
        return index

    def send_snapshot(self, p):
        s = self.snapshot
        if s is None:
            return
        self.send(Message("InstallSnapshot", p, self.term, snapshot_index=s["index"],
                          snapshot_term=s["term"], snapshot_size=s["size"],
                          conf_index=s["conf_index"], voters=s["voters"], learners=[],
                          offset=0, length=s["size"], done=True))

    def handle_install_snapshot(self, m):
        self.become_follower(m.term, m.sender)
        if m.snapshot_index > self.commit:
            self.adopt_snapshot(m)
        self.send_when_durable(Message("InstallSnapshotResult", m.sender, self.term,
                                       index=m.snapshot_index, offset=m.length, done=True))

    def handle_install_snapshot_result(self, m):
        if self.role != LEADER or m.term != self.term or m.rejected:
            return
        p = m.sender
        self.match_index[p] = max(self.match_index[p], m.index)
        self.next_index[p] = max(self.next_index[p], m.index + 1)
        self.advance_commit()
        if self.next_index[p] <= self.log.last_index():
            self.send_append(p)
