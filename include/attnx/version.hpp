// SPDX-License-Identifier: MIT
/// \file version.hpp
/// The single source of attnx's version; CMakeLists.txt parses these three lines.
#ifndef ATTNX_VERSION_HPP
#define ATTNX_VERSION_HPP

#define ATTNX_VERSION_MAJOR 0
#define ATTNX_VERSION_MINOR 1
#define ATTNX_VERSION_PATCH 0

#define ATTNX_VERSION (ATTNX_VERSION_MAJOR * 10000 + ATTNX_VERSION_MINOR * 100 + ATTNX_VERSION_PATCH)

#endif  // ATTNX_VERSION_HPP
