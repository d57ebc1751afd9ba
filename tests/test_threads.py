"""torch's thread count follows the cores a process may use: affinity, CPU quota, launched processes, and the
cores other processes keep busy; an explicit count wins."""

import pytest

from llamagym.run import threads


def test_cgroup_quotas(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert threads.cpu_quota(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert threads.cpu_quota(tmp_path) is None


@pytest.fixture
def four_free_cores(monkeypatch):
    for name in (threads.THREADS_VARIABLE, "OMP_NUM_THREADS", *threads.LOCAL_SIZE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    return monkeypatch


def _busy(monkeypatch, samples):
    """cpu_seconds answers (machine busy, own busy) from `samples`, one per look, a second apart."""
    looks = iter(samples)
    clock = iter(range(100))
    monkeypatch.setattr(threads, "cpu_seconds", lambda: next(looks))
    monkeypatch.setattr(threads.time, "monotonic", lambda: float(next(clock)))


def test_other_processes_busy_cores_are_left_to_them(four_free_cores):
    _busy(four_free_cores, [(0.0, 0.0), (1.0, 0.0), (4.0, 3.0), (7.0, 3.0)])
    balancer = threads.ThreadBalancer()
    assert balancer.threads() == 3  # another process kept one core busy
    assert balancer.threads() == 4  # the machine's only load was this process
    assert balancer.threads() == 1  # three cores busy elsewhere: one thread, never none


def test_launched_processes_share_the_cores(four_free_cores):
    four_free_cores.setenv("LOCAL_WORLD_SIZE", "2")
    _busy(four_free_cores, [(0.0, 0.0), (0.0, 0.0)])
    assert threads.ThreadBalancer().threads() == 2


def test_an_explicit_count_wins(four_free_cores):
    four_free_cores.setenv("OMP_NUM_THREADS", "3")
    assert threads.ThreadBalancer().threads() == 3
    four_free_cores.setenv(threads.THREADS_VARIABLE, "1")
    assert threads.ThreadBalancer().threads() == 1


def test_without_proc_the_share_is_used(four_free_cores):
    _busy(four_free_cores, [None, None])
    assert threads.ThreadBalancer().threads() == 4


def test_cpu_seconds_reads_this_machine():
    sample = threads.cpu_seconds()
    assert sample is None or (sample[0] >= sample[1] >= 0)


def test_only_the_first_configure_in_a_process_waits_to_look(monkeypatch):
    from llamagym.run import threads

    monkeypatch.delenv(threads.THREADS_VARIABLE, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_latest", None)
    waits = []
    monkeypatch.setattr(threads.time, "sleep", waits.append)
    first = threads.configure_threads()
    look = first.last
    second = threads.configure_threads()
    assert waits == [0.25]
    assert second is not first and threads._latest is second  # settings re-read for each agent
    assert second.last[0] >= look[0]  # measured from the first look on
