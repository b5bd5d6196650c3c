# nlme REML fit of tests/data/residual_ar_sigma.csv (written by tests/test_residual_fit.py's simulate(),
# seed 11), the model of lb.LMM("y ~ x + (1 + x | neuron)", sigma="~ cond + (1 | neuron)", ar="trial | neuron"):
# residual SD per neuron times per condition (varComb of two varIdent) and AR(1) over trials within neurons.
# Run from the repository root:  Rscript tests/data/residual_nlme.R   (writes tests/data/residual_nlme.json)
suppressMessages(library(nlme))
d <- read.csv("tests/data/residual_ar_sigma.csv")
d$neuron <- factor(d$neuron)
d$cond <- factor(d$cond)
m <- lme(y ~ x, random = ~ 1 + x | neuron, data = d, method = "REML",
         weights = varComb(varIdent(form = ~ 1 | neuron), varIdent(form = ~ 1 | cond)),
         correlation = corAR1(form = ~ trial | neuron),
         control = lmeControl(maxIter = 200, msMaxIter = 200))
rho <- coef(m$modelStruct$corStruct, unconstrained = FALSE)
ratios <- coef(m$modelStruct$varStruct, unconstrained = FALSE)  # sd ratios to each factor's first level
num <- function(x) sprintf("%.10g", x)
entries <- paste0('"', names(ratios), '": ', num(ratios), collapse = ", ")
json <- paste0('{\n  "source": "nlme ', packageVersion("nlme"), ' (', R.version.string,
               '), REML; Rscript tests/data/residual_nlme.R",\n',
               '  "rho": ', num(rho), ',\n  "sigma": ', num(m$sigma), ',\n',
               '  "fixef": {"Intercept": ', num(fixef(m)[1]), ', "x": ', num(fixef(m)[2]), '},\n',
               '  "ratios": {', entries, '}\n}\n')
writeLines(json, "tests/data/residual_nlme.json")
