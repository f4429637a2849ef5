"""Representation analysis for the CSL claims: alignment, uniformity, class margins, false negatives, sensitivity."""
