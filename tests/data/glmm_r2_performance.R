# Nakagawa R2 of GLMMs (performance::r2_nakagawa, latent scale) at lme4's glmer (Laplace ML) fits, with the
# variance components behind it (insight::get_variance), written to tests/data/glmm_r2_performance.json.
# Run from the repository root:  Rscript tests/data/glmm_r2_performance.R
suppressMessages({library(lme4); library(performance); library(insight); library(jsonlite)})
cb <- read.csv("tests/data/cbpp.csv")
cb$period <- factor(cb$period)
gt <- read.csv("tests/data/grouseticks.csv")
gt$YEAR <- factor(gt$YEAR)
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
one <- function(dataset, data, formula, family) {
  m <- glmer(as.formula(formula), data = data, family = family)
  r <- suppressWarnings(r2_nakagawa(m))
  v <- suppressWarnings(get_variance(m))
  list(dataset = dataset, formula = formula, family = family$family, link = family$link,
       fixef = as.list(fixef(m)), sd = as.list(sapply(VarCorr(m), function(x) attr(x, "stddev"))),
       var_fixed = v$var.fixed, var_random = v$var.random, var_distribution = v$var.distribution,
       r2_marginal = unname(r$R2_marginal), r2_conditional = unname(r$R2_conditional))
}
out <- list(source = paste0("performance ", packageVersion("performance"), ", insight ", packageVersion("insight"),
                            ", lme4 ", packageVersion("lme4"), " (", R.version.string, "); ",
                            "Rscript tests/data/glmm_r2_performance.R"),
            entries = list(
              one("cbpp", cb, "cbind(incidence, size - incidence) ~ period + (1 | herd)", binomial()),
              one("grouseticks", gt, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", poisson())))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/glmm_r2_performance.json")
