# lme4 ML and REML fits of two crossed designs, written to tests/data/crossed_lme4.json.
# Run from the repository root after make_crossed_sim.py:  Rscript tests/data/crossed_lme4.R
# Also writes penicillin.csv (lme4's Penicillin data, Davies & Goldsmith 1972).
suppressMessages({library(lme4); library(jsonlite)})
write.csv(Penicillin, "tests/data/penicillin.csv", row.names = FALSE)
sim <- read.csv("tests/data/crossed_sim.csv")
pen <- read.csv("tests/data/penicillin.csv")
one <- function(dataset, data, formula, reml) {
  m <- lmer(as.formula(formula), data = data, REML = reml)
  vc <- as.data.frame(VarCorr(m))
  list(dataset = dataset, formula = formula, method = if (reml) "REML" else "ML",
       fixef = as.list(fixef(m)),
       varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])),
       sigma = sigma(m), logLik = as.numeric(logLik(m)), nobs = nobs(m),
       singular = isSingular(m))
}
entries <- list(
  one("penicillin", pen, "diameter ~ 1 + (1 | plate) + (1 | sample)", FALSE),
  one("penicillin", pen, "diameter ~ 1 + (1 | plate) + (1 | sample)", TRUE),
  one("crossed_sim", sim, "y ~ cond + (1 + cond | subject) + (1 + cond | item)", FALSE),
  one("crossed_sim", sim, "y ~ cond + (1 + cond | subject) + (1 + cond | item)", TRUE)
)
out <- list(source = paste0("lme4 ", packageVersion("lme4"), " (", R.version.string, "), default lmerControl; ",
                            "Rscript tests/data/crossed_lme4.R"),
            entries = entries)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/crossed_lme4.json")
