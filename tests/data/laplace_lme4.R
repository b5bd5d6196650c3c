# lme4's Laplace deviance (glmer, nAGQ = 1) at fixed parameter points, written to
# tests/data/laplace_lme4.json: the reference of lmm-bayes's Laplace method (the same
# approximation, so the values must agree to the modes' tolerance). Run from the
# repository root:  Rscript tests/data/laplace_lme4.R
# devFunOnly = TRUE returns lme4's deviance as a function of c(theta, beta); tolPwrss = 1e-12
# converges its penalized IRLS for the modes far below the default. For models without a
# scale parameter G = Lambda Lambda' with theta the lower triangle of Lambda, column by column.
suppressMessages({library(lme4); library(jsonlite); library(MASS)})
sim <- read.csv("tests/data/laplace_sim.csv")
cb <- read.csv("tests/data/cbpp.csv"); cb$period <- factor(cb$period)
ctl <- glmerControl(tolPwrss = 1e-12)
point <- function(dataset, data, formula, family, G, beta, alpha = NULL) {
  dd <- glmer(as.formula(formula), data = data, family = family, devFunOnly = TRUE, control = ctl)
  theta <- c()
  for (name in names(G)) {
    L <- t(chol(G[[name]]))
    theta <- c(theta, L[lower.tri(L, diag = TRUE)])
  }
  list(dataset = dataset, formula = formula, family = family$family, alpha = alpha,
       G = lapply(G, function(m) m), theta_order = names(G), beta = beta,
       logLik = -dd(c(theta, beta)) / 2)
}
nested <- "~ x + (1 + x | s) + (1 | s:n)"
Gn <- list("s:n" = matrix(0.08), "s" = matrix(c(0.3, 0.02, 0.02, 0.05), 2))
entries <- list(
  point("cbpp", cb, "cbind(incidence, size - incidence) ~ period + (1 | herd)", binomial(),
        list(herd = matrix(0.412253792094153)), c(-1.39834286447115, -0.991924974975739, -1.12821621594334, -1.57974541364919)),
  point("cbpp", cb, "cbind(incidence, size - incidence) ~ period + (1 | herd)", binomial(),
        list(herd = matrix(1.3)), c(-1.0, -0.5, -1.5, -2.0)),
  point("laplace_sim", sim, paste("spikes", nested), poisson(), Gn, c(0.9, 0.25)),
  point("laplace_sim", sim, paste("cbind(k, 5 - k)", nested), binomial(), Gn, c(-0.6, 0.35)),
  point("laplace_sim", sim, paste("nb", nested), negative.binomial(theta = 2.5), Gn, c(0.95, 0.3), alpha = 2.5)
)
out <- list(source = paste0("lme4 ", packageVersion("lme4"), " (", R.version.string, "), glmer devFunOnly, ",
                            "tolPwrss = 1e-12; Rscript tests/data/laplace_lme4.R"),
            entries = entries)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/data/laplace_lme4.json")
