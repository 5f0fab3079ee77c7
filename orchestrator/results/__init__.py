"""Reading results: merge into one table, report, compare (plain and --across), plots, publish (a static site)."""
