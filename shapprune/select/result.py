"""What a subset search returns: every candidate it proposed and the mask it chose for each number of dropped layers."""

from __future__ import annotations

from dataclasses import dataclass, field

from shapprune.select.candidates import Candidate


@dataclass(frozen=True)
class Cost:
    """What a search spent on one ``k``: new LLM evaluations and the kept layers they ran (sum over masks).

    Times the tokens per evaluation, ``kept_layers`` is the layer-token forwards (a mask that keeps fewer
    layers costs less), the measure that compares fairly with a baseline's evaluations.
    """

    evaluations: int
    kept_layers: int
    screen_evaluations: int = 0  # on a screen: the same game on a fraction of the tokens
    screen_kept_layers: int = 0
    screen_cost: float = 0.0  # one screening evaluation in full evaluations (its share of the tokens)

    @property
    def equivalent(self) -> float:
        """Full evaluations plus screening evaluations at their cost: what the budget counts."""
        return self.evaluations + self.screen_cost * self.screen_evaluations

    def layer_token_forwards(self, tokens_per_evaluation: int) -> int:
        """Kept layers x tokens summed over the evaluations (screening ones at their share of the tokens)."""
        return round((self.kept_layers + self.screen_cost * self.screen_kept_layers) * tokens_per_evaluation)


@dataclass
class Selection:
    """Candidates in proposal order, the chosen one per ``n_drop`` and the LLM evaluations spent."""

    n_layers: int
    candidates: list[Candidate]
    chosen: dict[int, Candidate]
    chosen_by: dict[int, str]  # validation | calibration | predicted (nothing could be verified)
    n_calibration_evaluations: int
    n_validation_evaluations: int
    budget: int
    rounds: int
    kept_layers: int = 0  # kept layers summed over every evaluation (x tokens: layer-token forwards)
    costs: dict[int, Cost] = field(default_factory=dict)  # per n_drop (budgeted search only)
    notes: dict[int, dict] = field(default_factory=dict)  # per n_drop: margin to the runner-up, budget warnings
    n_screen_evaluations: int = 0  # budgeted search with a screen: evaluations on the screen (a fraction of a full one)

    @property
    def n_evaluations(self) -> int:
        """Distinct LLM evaluations spent by the search (calibration and validation together)."""
        return self.n_calibration_evaluations + self.n_validation_evaluations

    def from_source(self, n_drop: int, source: str) -> Candidate | None:
        """The verified candidate of ``source`` for ``n_drop`` with the best validation (else calibration) value."""
        found = [c for c in self.candidates if c.n_drop == n_drop and source in c.sources and c.verified]
        return max(found, key=_order, default=None)

    def records(self) -> list[dict]:
        """One flat row per candidate, with ``chosen`` marking the choice for its ``n_drop``."""
        return [c.record() | {"chosen": self.chosen.get(c.n_drop) is c} for c in self.candidates]

    def summary(self) -> dict:
        """JSON-friendly summary: per ``n_drop`` the chosen layers and utilities, and the ranking's choice."""
        out: dict = {}
        for k, c in sorted(self.chosen.items()):
            rank = self.from_source(k, "ranking")
            out[str(k)] = {
                "dropped": c.dropped,
                "bits": c.bits,
                "sources": c.sources,
                "chosen_by": self.chosen_by[k],
                "predicted": c.predicted,
                "calibration": c.calibration,
                "validation": c.validation,
                "round": c.round,
                **(
                    {
                        "evaluations": self.costs[k].evaluations,
                        "kept_layers": self.costs[k].kept_layers,
                        "screen_evaluations": self.costs[k].screen_evaluations,
                        "screen_kept_layers": self.costs[k].screen_kept_layers,
                        "equivalent_evaluations": self.costs[k].equivalent,
                    }
                    if k in self.costs
                    else {}
                ),
                **self.notes.get(k, {}),
                "ranking": None
                if rank is None
                else {"dropped": rank.dropped, "calibration": rank.calibration, "validation": rank.validation},
            }
        return out


def _order(c: Candidate) -> tuple[float, float]:
    """Sort key: validation first (NaN last), then calibration."""
    val = c.validation if c.validation == c.validation else float("-inf")
    cal = c.calibration if c.calibration == c.calibration else float("-inf")
    return val, cal
