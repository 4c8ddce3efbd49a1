// names.h — image categories carried in file names, one grammar for the whole
// program (the dataset layer tags samples with it; `camoxpert eval` groups scores).
//   COD10K-CAM-<super#>-<Super>-<sub#>-<Sub>-<n>   -> Super, Sub (also COD10K-NonCAM-...)
//   SYN-CAM-<Family>-<n>                            -> Family, "" (`camoxpert synth`)
//
//   char super[64], sub[64];
//   if (name_category("COD10K-CAM-1-Aquatic-3-Crab-32.png", super, sizeof super, sub, sizeof sub))
//       ...   // super = "Aquatic", sub = "Crab"
#pragma once
#include <stddef.h>

// The extension (from the last '.') is ignored. Returns 1 and fills super and
// sub (truncated to their sizes) when the name carries a category; 0 with both
// empty otherwise.
int name_category(const char *name, char *super, size_t n_super, char *sub, size_t n_sub);
