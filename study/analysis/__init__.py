"""The analysis stage: a study's files read into DataFrames (`load`), the report (`report`), the plots
(`plots`). No Ray and no training code: a finished, running or interrupted study is read as it is."""
