"""What runs at evaluation time besides the generated plans: feed checks, control-flow
executors."""
