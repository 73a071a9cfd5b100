// Request-body validation helpers. Every failure is a 400 ApiError whose message names the
// offending field by its full path (e.g. `appDefinition.changedModules[2].path`).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "standin/api_error.h"

namespace standin {

// Parses a request body that must be a JSON object.
nlohmann::json parseJsonObject(std::string_view body);

// "parent.field", or just "field" at the top level.
std::string fieldPath(std::string_view parent, std::string_view field);

const nlohmann::json& requireField(const nlohmann::json& object, std::string_view field,
                                   std::string_view parent = "");
std::string requireString(const nlohmann::json& object, std::string_view field,
                          std::string_view parent = "");
const nlohmann::json& requireArray(const nlohmann::json& object, std::string_view field,
                                   std::string_view parent = "");
const nlohmann::json& requireObject(const nlohmann::json& object, std::string_view field,
                                    std::string_view parent = "");

// Absent and null both count as "not given".
std::optional<std::string> optionalString(const nlohmann::json& object, std::string_view field,
                                          std::string_view parent = "");
bool optionalBool(const nlohmann::json& object, std::string_view field, bool fallback,
                  std::string_view parent = "");
std::optional<int64_t> optionalInteger(const nlohmann::json& object, std::string_view field,
                                       std::string_view parent = "");

// Rejects members other than `allowed`, for bodies the spec marks additionalProperties:false.
void rejectUnknownFields(const nlohmann::json& object,
                         std::initializer_list<std::string_view> allowed,
                         std::string_view parent = "");

}  // namespace standin
