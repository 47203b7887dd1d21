#pragma once
/// \file hiredis_client.hpp
/// Forwarding header: the hiredis adapter lives in <cacheaside/client/hiredis.hpp>.

#include <cacheaside/client/hiredis.hpp>
