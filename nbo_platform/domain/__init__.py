"""Domain logic: plain, vectorized functions with no orchestration imports."""
