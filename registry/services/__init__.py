"""The rules of the registry: push, pull, delete. Services own transactions and the
order of writes (bytes first, then SQL rows in one transaction)."""
