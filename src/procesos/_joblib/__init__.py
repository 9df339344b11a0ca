"""Layer 6: what ``procesos.joblib`` (the backend) runs on — the pool ``Parallel`` calls
share (``_pool.py``) and the function workers run a batch with (``_batch.py``)."""

