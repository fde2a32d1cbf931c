"""What the course notebooks use to show and explain, and the library itself never needs: the
dual-monitor walkthrough and its views (notebook 02), data exploration (01), planted leakage (06)
and the environment report (00)."""
