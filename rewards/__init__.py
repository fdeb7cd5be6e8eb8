"""Built-in reward plugins (imported as ``rlagent.rewards``)."""
