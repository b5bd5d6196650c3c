# lme4 glmer (Laplace ML) fits of two GLMMs on data sets shipped with lme4, written to
# tests/data/glmm_lme4.json. Run from the repository root:  Rscript tests/data/glmm_lme4.R
# Also writes cbpp.csv, grouseticks.csv and verbagg.csv (lme4's cbpp, grouseticks and VerbAgg data).
# VerbAgg: r2 is written as lme4 has it ("N"/"Y"); glmer models P(r2 = "Y") (its second level),
# so the tests recode Y -> 1, N -> 0. "verbagg_sub" is the ids whose number is 1 modulo 4
# (79 of 316 ids, all 24 items, 1,896 rows), fitted on exactly those rows.
suppressMessages({library(lme4); library(jsonlite)})
write.csv(cbpp, "tests/data/cbpp.csv", row.names = FALSE)
gt <- grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION")]
write.csv(gt, "tests/data/grouseticks.csv", row.names = FALSE)
cb <- read.csv("tests/data/cbpp.csv")
cb$period <- factor(cb$period)
data(VerbAgg, package = "lme4")
write.csv(VerbAgg, "tests/data/verbagg.csv", row.names = FALSE)
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
va <- read.csv("tests/data/verbagg.csv")
stopifnot(all(va$r2 %in% c("N", "Y")))
va$r2 <- as.integer(va$r2 == "Y")
va_sub <- va[va$id %% 4 == 1, ]
VA <- "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
entries <- list(
  one("cbpp", cb, "cbind(incidence, size - incidence) ~ period + (1 | herd)", binomial()),
  one("grouseticks", gt, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", poisson()),
  one("verbagg", va, VA, binomial()),
  one("verbagg_sub", va_sub, VA, binomial())
)
out <- list(source = paste0("lme4 ", packageVersion("lme4"), " (", R.version.string, "), default glmerControl; ",
                            "Rscript tests/data/glmm_lme4.R"),
            entries = entries)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/glmm_lme4.json")
