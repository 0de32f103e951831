"""Money leaving the service: the banks Paystack pays out to (withdrawals build on them)."""
