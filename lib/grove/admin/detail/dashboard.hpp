// Internal (not installed): the admin endpoint's dashboard page.
#pragma once

#include <string_view>

namespace grove::admin::detail {

/// The whole page: HTML, CSS and JavaScript, no external assets. It opens
/// /events (passing on an access_token from its own URL), draws the tree
/// of each snapshot and the rates between two snapshots. Text from the
/// node (labels, ids) is set as text, never parsed as HTML.
std::string_view dashboard_html() noexcept;

} // namespace grove::admin::detail
