# Nakagawa R2 (performance::r2_nakagawa) at lme4's REML estimates, written to tests/data/r2_performance.json
# with the estimates they were computed at. Run from the repository root:  Rscript tests/data/r2_performance.R
suppressMessages({library(lme4); library(performance); library(jsonlite)})
sleep <- read.csv("lmm_bayes/data/sleepstudy.csv")
sim <- read.csv("tests/data/crossed_sim.csv")
one <- function(dataset, data, formula) {
  m <- lmer(as.formula(formula), data = data, REML = TRUE)
  r <- r2_nakagawa(m)
  vc <- as.data.frame(VarCorr(m))
  list(dataset = dataset, formula = formula, fixef = as.list(fixef(m)),
       varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])), sigma = sigma(m),
       r2_marginal = unname(r$R2_marginal), r2_conditional = unname(r$R2_conditional))
}
out <- list(source = paste0("performance ", packageVersion("performance"), ", lme4 ", packageVersion("lme4"), " (",
                            R.version.string, "); Rscript tests/data/r2_performance.R"),
            entries = list(one("sleepstudy", sleep, "Reaction ~ Days + (Days | Subject)"),
                           one("sleepstudy", sleep, "Reaction ~ Days + (1 | Subject)"),
                           one("crossed_sim", sim, "y ~ cond + (1 + cond | subject) + (1 + cond | item)")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/r2_performance.json")
