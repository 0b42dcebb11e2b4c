"""Planted mistakes: the reference Raft (lab_reference.py) with one rule broken each, as
students break them. Each must fail the part of the lab that tests that rule, with the seed and
the last events of the run (python/tests/test_lab.py)."""

import lab_reference
from craft.lab import Message


class NoElectionRestriction(lab_reference.Raft):
    """Votes for any candidate, however far behind its log (paper 5.4.1 forgotten)."""

    def log_up_to_date(self, m):
        return True


class CommitOldTerms(lab_reference.Raft):
    """Commits any entry a majority stores, whatever its term (Figure 8's mistake)."""

    def may_commit(self, n):
        return True


class VoteBeforeDurable(lab_reference.Raft):
    """Grants a vote before it is on disk: a crash can make it vote twice in a term."""

    def reply_vote(self, m, granted):
        self.send(Message("RequestVoteResult", m.sender, self.term, granted=granted))


class NoBacktracking(lab_reference.Raft):
    """Ignores the conflict hint: backs up one entry per rejection."""

    def backtrack(self, m):
        return m.index
