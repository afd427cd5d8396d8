"""Choose which layers to drop by searching subsets on the surrogate and verifying the best on the LLM."""

from shapprune.select.blocks import best_blocks, contiguous_blocks
from shapprune.select.budgeted import BudgetPlan, budgeted_select, sleb_shares
from shapprune.select.candidates import SOURCES, Candidate, best_scored, ranking_mask
from shapprune.select.fit import surrogate_fit
from shapprune.select.result import Cost, Selection
from shapprune.select.search import beam_search, greedy_removal
from shapprune.select.spend import Screen
from shapprune.select.verify import Fit, SearchConfig, budget_shares, select_subsets

__all__ = [
    "SOURCES",
    "BudgetPlan",
    "Cost",
    "Candidate",
    "Fit",
    "Screen",
    "SearchConfig",
    "Selection",
    "beam_search",
    "best_blocks",
    "best_scored",
    "budget_shares",
    "budgeted_select",
    "contiguous_blocks",
    "greedy_removal",
    "ranking_mask",
    "select_subsets",
    "sleb_shares",
    "surrogate_fit",
]
