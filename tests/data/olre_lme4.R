# lme4 glmer (Laplace ML) fit of the grouseticks Poisson GLMM with an observation-level random
# effect (INDEX: one level per row, the overdispersion term of Elston et al. 2001 and of lme4's
# own grouseticks example), written to tests/data/olre_lme4.json. Run from the repository root:
#   Rscript tests/data/olre_lme4.R
# Reads tests/data/grouseticks.csv (written by glmm_lme4.R from lme4's grouseticks).
suppressMessages({library(lme4); library(jsonlite)})
gt <- read.csv("tests/data/grouseticks.csv")
gt$YEAR <- factor(gt$YEAR)
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
gt$INDEX <- factor(gt$INDEX)
formula <- "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
m <- glmer(as.formula(formula), data = gt, family = poisson())
vc <- as.data.frame(VarCorr(m))
out <- list(
  source = paste0("lme4 ", packageVersion("lme4"), " (", R.version.string, "), default glmerControl; ",
                  "Rscript tests/data/olre_lme4.R"),
  dataset = "grouseticks", formula = formula, family = "poisson", link = "log",
  method = "Laplace ML (glmer, nAGQ = 1)",
  fixef = as.list(fixef(m)), fixef_se = as.list(sqrt(diag(as.matrix(vcov(m))))),
  sd = setNames(as.list(vc$sdcor), vc$grp), logLik = as.numeric(logLik(m)), nobs = nobs(m),
  singular = isSingular(m))
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/olre_lme4.json")
