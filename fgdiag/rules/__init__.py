"""Rules: one module per family (FGD1xx scales ... FGD8xx distributed), each holding its codes' docs, static
checks and runtime check classes; `registry` collects them, `engine` streams metric rows through them and
`catalog` lists the family modules."""
