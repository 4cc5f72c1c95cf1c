#include "spindle/http/message.hpp"

#include <algorithm>

namespace spindle::http {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

const std::string& headers::set(std::string_view name, std::string value) {
  remove(name);
  return fields_.emplace_back(std::string(name), std::move(value)).second;
}

void headers::remove(std::string_view name) {
  std::erase_if(fields_, [&](const field& f) { return iequals(f.first, name); });
}

std::optional<std::string_view> headers::get(std::string_view name) const {
  for (const auto& f : fields_)
    if (iequals(f.first, name)) return std::string_view(f.second);
  return std::nullopt;
}

std::vector<std::string_view> headers::get_all(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& f : fields_)
    if (iequals(f.first, name)) out.emplace_back(f.second);
  return out;
}

std::string_view next_list_element(std::string_view& rest) noexcept {
  const std::size_t comma = rest.find(',');
  std::string_view item = rest.substr(0, comma);
  rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
  while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
  return item;
}

bool headers::has_token(std::string_view name, std::string_view token) const {
  for (std::string_view v : get_all(name)) {
    for (std::string_view rest = v; !rest.empty();) {
      if (iequals(next_list_element(rest), token)) return true;
    }
  }
  return false;
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

}  // namespace spindle::http
