"""What a team reviews an ablation with: paired significance tests, the comparison and study tables with
their CSV / Markdown / LaTeX exports, and safely rendered Markdown for comments.

Pure functions over values the selectors read; no ORM writes.
"""
