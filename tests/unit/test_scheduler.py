from gpt_service.engine.scheduler import Scheduler
from gpt_service.engine.sequence import SeqStatus, Sequence
from gpt_service.engine.types import SamplingParams


def _seq(n: int) -> Sequence:
    return Sequence(list(range(1, n + 1)), SamplingParams(), emit=lambda d: None)


def test_admits_up_to_max_running_then_decodes_them():
    sched = Scheduler(max_running=2, max_prefill_tokens=100)
    seqs = [_seq(3) for _ in range(3)]
    for s in seqs:
        sched.add(s)
    plan = sched.schedule()
    assert plan.prefill == seqs[:2] and sched.running == seqs[:2]
    assert seqs[0].status is SeqStatus.RUNNING and seqs[2].status is SeqStatus.WAITING
    plan = sched.schedule()
    assert plan.prefill == [] and sched.running == seqs[:2]  # the cap holds the third back
    sched.finish(seqs[0])
    plan = sched.schedule()
    assert plan.prefill == [seqs[2]] and sched.running == [seqs[1], seqs[2]]


def test_prefill_token_budget_limits_joiners_but_never_starves_a_long_prompt():
    sched = Scheduler(max_running=8, max_prefill_tokens=10)
    long, short1, short2 = _seq(50), _seq(6), _seq(6)
    for s in (long, short1, short2):
        sched.add(s)
    assert sched.schedule().prefill == [long]  # over budget, but first: admitted alone
    assert sched.schedule().prefill == [short1]  # 6 + 6 > 10
    assert sched.schedule().prefill == [short2]


def test_cancelled_sequences_leave_waiting_and_running():
    sched = Scheduler(max_running=1, max_prefill_tokens=100)
    a, b = _seq(2), _seq(2)
    sched.add(a)
    sched.add(b)
    sched.schedule()
    a.is_cancelled = b.is_cancelled = True
    plan = sched.schedule()
    assert set(plan.cancelled) == {a, b}
    assert not sched.has_work and plan.prefill == []


def test_prefill_budget_counts_the_padded_batch_the_prefill_computes():
    sched = Scheduler(max_running=8, max_prefill_tokens=20)
    a, b, c = _seq(9), _seq(2), _seq(3)
    for s in (a, b, c):
        sched.add(s)
    assert sched.schedule().prefill == [a, b]  # 2 rows x 9 columns; a third row makes 27
    assert sched.schedule().prefill == [c]
