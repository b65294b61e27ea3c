"""The pipeline's stages, one module each. Each reads the previous stage's artifacts from the run folder and
writes its own, so any stage can be rerun alone (the numbered scripts do exactly that).

    profiles    split + id maps + one streamed pass over the fit weeks  -> fit_data.npz, targets.parquet
    candidates  every source and baseline, top-`candidate_depth` users per target clip -> candidates/*.parquet
    blend       reciprocal-rank fusion of the configured sources -> candidates/blend.parquet; MixiGen
                (learned position value, k-way merge) and the tuned fixed quota -> mixigen/, quota
    rank        XGBoost reranker trained on holdout weeks, applied to the pool -> candidates/reranked.parquet
    assign      cap-aware assignment of every method -> lists/<method>.npy (+ uncapped top lists)
    evaluate    NDCG@100 of every method against the truth week (+ the synthetic oracle) -> results.md/json
    submission  the final method's lists -> submissions/submission.parquet (validated)

run.py is the run folder; execute.py runs one stage with its records; holdout_runs.py builds the holdout
runs (by calling the profiles and candidates stages) and training_data.py labels their pools, which the
blend and rank stages train on. pipeline.py wires the stages in order."""
