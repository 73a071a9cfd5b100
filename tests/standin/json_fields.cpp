#include "standin/json_fields.h"

#include <algorithm>
#include <cmath>

namespace standin {
namespace {

const nlohmann::json* findField(const nlohmann::json& object, std::string_view field) {
  const auto found = object.find(std::string(field));
  if (found == object.end() || found->is_null()) return nullptr;
  return &*found;
}

std::string quoted(std::string_view parent, std::string_view field) {
  return "`" + fieldPath(parent, field) + "`";
}

}  // namespace

nlohmann::json parseJsonObject(std::string_view body) {
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) throw badRequest("The request body is not valid JSON");
  if (!parsed.is_object()) throw badRequest("The request body must be a JSON object");
  return parsed;
}

std::string fieldPath(std::string_view parent, std::string_view field) {
  if (parent.empty()) return std::string(field);
  return std::string(parent) + "." + std::string(field);
}

const nlohmann::json& requireField(const nlohmann::json& object, std::string_view field,
                                   std::string_view parent) {
  const nlohmann::json* value = findField(object, field);
  if (!value) throw badRequest("Missing required field " + quoted(parent, field));
  return *value;
}

std::string requireString(const nlohmann::json& object, std::string_view field,
                          std::string_view parent) {
  const nlohmann::json& value = requireField(object, field, parent);
  if (!value.is_string()) throw badRequest(quoted(parent, field) + " must be a string");
  return value.get<std::string>();
}

const nlohmann::json& requireArray(const nlohmann::json& object, std::string_view field,
                                   std::string_view parent) {
  const nlohmann::json& value = requireField(object, field, parent);
  if (!value.is_array()) throw badRequest(quoted(parent, field) + " must be an array");
  return value;
}

const nlohmann::json& requireObject(const nlohmann::json& object, std::string_view field,
                                    std::string_view parent) {
  const nlohmann::json& value = requireField(object, field, parent);
  if (!value.is_object()) throw badRequest(quoted(parent, field) + " must be an object");
  return value;
}

std::optional<std::string> optionalString(const nlohmann::json& object, std::string_view field,
                                          std::string_view parent) {
  const nlohmann::json* value = findField(object, field);
  if (!value) return std::nullopt;
  if (!value->is_string()) throw badRequest(quoted(parent, field) + " must be a string");
  return value->get<std::string>();
}

bool optionalBool(const nlohmann::json& object, std::string_view field, bool fallback,
                  std::string_view parent) {
  const nlohmann::json* value = findField(object, field);
  if (!value) return fallback;
  if (!value->is_boolean()) throw badRequest(quoted(parent, field) + " must be a boolean");
  return value->get<bool>();
}

std::optional<int64_t> optionalInteger(const nlohmann::json& object, std::string_view field,
                                       std::string_view parent) {
  const nlohmann::json* value = findField(object, field);
  if (!value) return std::nullopt;
  if (value->is_number_integer()) return value->get<int64_t>();
  // JSON has one number type; 1.7e12 is still an integer value.
  if (value->is_number_float()) {
    const double number = value->get<double>();
    if (std::isfinite(number) && std::trunc(number) == number && std::fabs(number) < 9.0e18) {
      return static_cast<int64_t>(number);
    }
  }
  throw badRequest(quoted(parent, field) + " must be an integer");
}

void rejectUnknownFields(const nlohmann::json& object,
                         std::initializer_list<std::string_view> allowed,
                         std::string_view parent) {
  for (const auto& [name, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      throw badRequest("Unknown field " + quoted(parent, name));
    }
  }
}

}  // namespace standin
