// SPDX-License-Identifier: MIT
/// \file attnx.hpp
/// Umbrella header: includes every attnx mechanism.
#ifndef ATTNX_ATTNX_HPP
#define ATTNX_ATTNX_HPP

#include "attnx/bigbird.hpp"
#include "attnx/core.hpp"
#include "attnx/estimate.hpp"
#include "attnx/exact.hpp"
#include "attnx/feature_maps.hpp"
#include "attnx/linear_attention.hpp"
#include "attnx/linformer.hpp"
#include "attnx/mechanisms.hpp"
#include "attnx/metrics.hpp"
#include "attnx/multi_head.hpp"
#include "attnx/nystrom.hpp"
#include "attnx/random.hpp"
#include "attnx/version.hpp"

#endif  // ATTNX_ATTNX_HPP
