#include "stagegate/core/text.hpp"

#include <boost/url/encode.hpp>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/grammar/alnum_chars.hpp>
#include <boost/url/grammar/lut_chars.hpp>
#include <boost/url/pct_string_view.hpp>

namespace stagegate {

namespace urls = boost::urls;

std::string percent_encode(std::string_view text, std::string_view keep) {
    const std::string keep_text(keep);  // lut_chars reads a NUL-terminated list
    const auto unreserved = urls::grammar::lut_chars(urls::grammar::alnum_chars) +
                            urls::grammar::lut_chars(keep_text.c_str());
    return urls::encode(text, unreserved);
}

std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
    auto valid = urls::make_pct_string_view(text);
    if (!valid) {
        return std::nullopt;
    }
    urls::encoding_opts opts;
    opts.space_as_plus = plus_is_space;
    return valid->decode(opts);
}

}  // namespace stagegate
