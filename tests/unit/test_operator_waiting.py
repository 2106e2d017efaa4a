"""The daemon waits for a Job it has just created to show in the Jobs' index before it
decides again (`waiting.CreatedJobs`): deciding on an index without it would create
the Job a second time and send the run's START twice."""

from __future__ import annotations

from lineagehub_operator.waiting import CreatedJobs


def test_nothing_created_nothing_to_wait_for() -> None:
    assert CreatedJobs(patience=10).wait(set(), clock=5.0) == 0.0


def test_a_created_job_is_waited_for_until_the_index_shows_it() -> None:
    jobs = CreatedJobs(patience=10)
    jobs.created("extract", clock=100.0)
    assert jobs.wait(set(), clock=100.0) == 10.0
    assert jobs.wait({"other"}, clock=104.0) == 6.0
    assert jobs.wait({"extract"}, clock=104.5) == 0.0
    assert jobs.wait(set(), clock=105.0) == 0.0, "seen once: not waited for again"


def test_the_wait_is_bounded_by_its_patience() -> None:
    """A Job deleted before the index saw it: the daemon decides again (and creates
    it again) once its patience has run out, and does not wait for it a second time."""
    jobs = CreatedJobs(patience=10)
    jobs.created("load", clock=0.0)
    assert jobs.wait(set(), clock=9.5) == 0.5
    assert jobs.wait(set(), clock=10.0) == 0.0
    assert jobs.wait(set(), clock=10.5) == 0.0


def test_the_earliest_unseen_job_bounds_the_wait() -> None:
    jobs = CreatedJobs(patience=10)
    jobs.created("extract", clock=0.0)
    jobs.created("extract", clock=3.0)  # created again: still counted from the first
    jobs.created("transform", clock=4.0)
    assert jobs.wait({"transform"}, clock=5.0) == 5.0
