"""What ops and whoever pays see: the admin API and page, route explain, cost reports."""
