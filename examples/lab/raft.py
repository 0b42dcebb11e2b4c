"""Your Raft. Fill in the TODOs part by part (docs/lab.md is the handout):

    Part A  leader election      python -m pytest test_3a_election.py
    Part B  log replication      python -m pytest test_3b_replication.py
    Part C  persistence          python -m pytest test_3c_persistence.py
    Part D  snapshots            python -m pytest test_3d_snapshots.py
    all, with a grade            python grade.py

craft's simulator runs this class in place of craft's own Raft core: every server of the
simulated cluster is a Raft(id, config, boot). It calls your node as it calls craft's core:

    step(message)        a message arrived (RaftNode.step hands it to receive() as a Message)
    tick()               one tick (10 ms of virtual time) passed
    propose(data)        a client's command: (index, term), or None when you do not lead
    take_update()        given: gathers what you queued (messages, log entries, hard state)
    persisted(seq)       given: the disk holds everything up to ticket seq

Read craft/lab.py (RaftNode): it keeps term, voted_for, leader, role, log, commit, and gives
you send(), send_when_durable(), save_hard_state(), log_append(), durable(), majority(). The
paper's Figure 2 is the specification; the tests tell you when you are done.

Rules of the simulator you will meet: randomness only from self.rng (so a seed replays a run);
a message may be lost, duplicated, delayed or reordered; a write reaches the disk some time
after you queue it, and a crash loses what has not reached it.
"""

from craft.lab import CANDIDATE, FOLLOWER, LEADER, Entry, Message, RaftNode


class Raft(RaftNode):
    def __init__(self, id, config, boot):
        # Volatile state of your own (lost at a crash). Add what you need.
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = 0
        self.votes = set()
        self.vote_seq = 0
        self.next_index = {}
        self.match_index = {}
        super().__init__(id, config, boot)  # boots: a new cluster, or restore(boot) (part C)
        self.reset_election_timer()

    def reset_election_timer(self):
        """A new randomized election timeout in [election_ticks, 2 * election_ticks)."""
        self.election_elapsed = 0
        self.randomized_timeout = self.rng.randint(self.election_ticks, 2 * self.election_ticks - 1)

    # ---- Part A: leader election ---------------------------------------------------------------

    def tick(self):
        """TODO (A): a follower or candidate counts ticks and campaigns when its randomized
        election timeout expires; a leader sends heartbeats every heartbeat_ticks."""
        raise NotImplementedError("TODO (part A): tick")

    def campaign(self):
        """TODO (A): become candidate: a new term, vote for yourself (save_hard_state: the term
        and the vote must reach the disk), ask every peer for its vote (RequestVote with
        last_log_index and last_log_term). Part C: your own vote counts only once durable."""
        raise NotImplementedError("TODO (part A): campaign")

    def receive(self, m):
        """A message arrived. TODO (A): Figure 2's rule for all servers -- a message with a
        higher term makes you a follower of that term; a request with a lower term is answered
        with your term (answer_stale) and otherwise ignored. Then dispatch by m.type."""
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
        """TODO (A): reply to a request of an older term with a refusal carrying your term, so
        that a deposed leader or a late candidate learns it."""

    def become_follower(self, term, leader):
        """TODO (A): follow leader (0: unknown) in term; a new term clears your vote (and must
        reach the disk)."""
        raise NotImplementedError("TODO (part A): become_follower")

    def handle_request_vote(self, m):
        """TODO (A): grant at most one vote per term (save it: save_hard_state) and reset your
        election timer when you grant. TODO (B): only to a candidate whose log is at least as
        up to date as yours (paper 5.4.1). TODO (C): the grant may only leave once your vote is
        on disk (send_when_durable)."""
        raise NotImplementedError("TODO (part A): handle_request_vote")

    def handle_request_vote_result(self, m):
        """TODO (A): count the grants of the current term; a majority makes you leader."""
        raise NotImplementedError("TODO (part A): handle_request_vote_result")

    def become_leader(self):
        """TODO (A): lead (role, leader), and tell everyone at once with a heartbeat.
        TODO (B): set next_index and match_index for every peer."""
        raise NotImplementedError("TODO (part A): become_leader")

    def send_heartbeats(self):
        """TODO (A): an AppendEntries to every peer (part B: send_append(peer))."""
        raise NotImplementedError("TODO (part A): send_heartbeats")

    # ---- Part B: log replication ---------------------------------------------------------------

    def propose(self, data):
        """TODO (B): on the leader, append Entry(index, term, data) to the log (log_append) and
        replicate it; return (index, term). Elsewhere return None."""
        return None

    def send_append(self, peer):
        """TODO (B): send peer the entries from next_index[peer] on (at most max_batch), after
        prev_index = next_index - 1 and its term, with your commit index. TODO (D): when
        next_index is at or below the log's first index, send the snapshot instead."""
        self.send(Message("AppendEntries", peer, self.term, prev_index=self.log.last_index(),
                          prev_term=self.log.last_term(), entries=[], commit=self.commit))

    def handle_append_entries(self, m):
        """TODO (A): the sender leads this term: follow it and reset your election timer.
        TODO (B): the consistency check on prev_index/prev_term (reject with a conflict hint:
        hint_index, hint_term -- see Message), then: skip the entries you hold already, and
        from the first conflict on replace your log with the leader's (log_append); advance
        your commit index to min(m.commit, the last new index); reply with index = the last
        new index. TODO (C): that reply promises the entries are stored: send_when_durable."""
        raise NotImplementedError("TODO (part A): handle_append_entries")

    def handle_append_entries_result(self, m):
        """TODO (B): on the leader, for the current term only: a success raises match_index and
        next_index and may advance the commit index; a rejection moves next_index back -- by a
        whole term per round trip using the hint, not by one entry -- and retries."""

    def advance_commit(self):
        """TODO (B): the highest index stored by a majority (you count yourself too, part C:
        only up to persisted_index, what your own disk holds) becomes committed -- but only an
        entry of the current term (paper 5.4.2, Figure 8)."""

    # ---- Part C: persistence -------------------------------------------------------------------

    def restore(self, boot):
        """TODO (C): start from what the disk holds (called at every boot but the first):
        boot["hard_state"] (term, vote, commit: a safe hint), boot["snapshot"] (None, or index,
        term, size, voters, conf_index: set log.offset, log.offset_term, self.snapshot, commit,
        applied), boot["entries"] (dicts: Entry.from_dict; skip those at or below the
        snapshot). Fill self.log.entries directly: they are on disk already."""
        raise NotImplementedError("TODO (part C): restore")

    def on_persisted(self):
        """Called after the disk confirmed a ticket. TODO (C): a candidate counts its own vote
        once the ticket that holds it is durable (durable(self.vote_seq), with vote_seq taken
        from pending_seq() when you voted); a leader's own entries count toward a commit once
        durable (advance_commit)."""

    # ---- Part D: snapshots ---------------------------------------------------------------------

    def compact_log(self, index):
        """TODO (D): the state machine was saved at index (self.snapshot holds its metadata):
        drop the entries up to index from the log (log.offset, log.offset_term, log.entries)
        and return index, so that the store drops them too."""
        return 0

    def send_snapshot(self, peer):
        """TODO (D): send peer an InstallSnapshot of self.snapshot in one chunk: snapshot_index,
        snapshot_term, snapshot_size, conf_index, voters from self.snapshot; offset=0,
        length=the size, done=True (the simulator reads the data from your disk)."""

    def handle_install_snapshot(self, m):
        """TODO (D): follow the sender; if the snapshot goes beyond your commit index, adopt it
        (adopt_snapshot(m) does the bookkeeping); reply InstallSnapshotResult(index=
        m.snapshot_index, done=True) once durable."""

    def handle_install_snapshot_result(self, m):
        """TODO (D): on the leader, the follower now holds everything up to m.index: raise its
        match_index and next_index and go on replicating."""
