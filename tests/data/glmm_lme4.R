# lme4 glmer (Laplace ML) fits of two GLMMs on data sets shipped with lme4, written to
# tests/data/glmm_lme4.json. Run from the repository root:  Rscript tests/data/glmm_lme4.R
# Also writes cbpp.csv and grouseticks.csv (lme4's cbpp and grouseticks data).
suppressMessages({library(lme4); library(jsonlite)})
write.csv(cbpp, "tests/data/cbpp.csv", row.names = FALSE)
gt <- grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION")]
write.csv(gt, "tests/data/grouseticks.csv", row.names = FALSE)
cb <- read.csv("tests/data/cbpp.csv")
cb$period <- factor(cb$period)
gt <- read.csv("tests/data/grouseticks.csv")
gt$YEAR <- factor(gt$YEAR)
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
one <- function(dataset, data, formula, family) {
  m <- glmer(as.formula(formula), data = data, family = family)
  vc <- as.data.frame(VarCorr(m))
  list(dataset = dataset, formula = formula, family = family$family, link = family$link,
       method = "Laplace ML (glmer, nAGQ = 1)",
       fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       varcorr = lapply(seq_len(nrow(vc)), function(i) as.list(vc[i, ])),
       logLik = as.numeric(logLik(m)), nobs = nobs(m), singular = isSingular(m))
}
entries <- list(
  one("cbpp", cb, "cbind(incidence, size - incidence) ~ period + (1 | herd)", binomial()),
  one("grouseticks", gt, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", poisson())
)
out <- list(source = paste0("lme4 ", packageVersion("lme4"), " (", R.version.string, "), default glmerControl; ",
                            "Rscript tests/data/glmm_lme4.R"),
            entries = entries)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/glmm_lme4.json")
