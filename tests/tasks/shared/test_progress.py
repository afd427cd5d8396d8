"""Step progress: rate and ETA from the elapsed time, resumed steps not counted in the rate."""

from __future__ import annotations

from tasks.shared import progress


def test_rate_and_eta_count_only_this_runs_steps(capsys, monkeypatch):
    def no_api(*args, **kwargs):
        raise RuntimeError("no Prefect API here")

    monkeypatch.setattr(progress, "create_progress_artifact", no_api)  # the bar is best effort: work goes on
    times = iter([100.0, 110.0])  # start, then 10 s later
    bar = progress.StepProgress("evaluate-full-progress", "parts", 10, already=3, clock=lambda: next(times))
    text = bar.step(5, "task-piqa")  # 2 new steps in 10 s -> 0.2/s, 5 left -> 25 s
    assert text == "5/10 parts (task-piqa)  0.200 parts/s  ETA 25s"
    assert text in capsys.readouterr().out
    assert bar.bar.id is None and bar.bar.percent == 50.0
