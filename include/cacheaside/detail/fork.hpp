#pragma once
// fork() support: objects whose state must not cross into a forked child (in-flight calls,
// lease renewals, pooled sockets) register here, and the child resets them before it returns
// from fork(), while it still has a single thread. The registry's lock is held across fork()
// so that no registration is half done in the child.

#include <algorithm>
#include <mutex>
#include <vector>

#include <pthread.h>

namespace cacheaside::detail {

// Something with per-process state.
class ForkAware {
public:
  // Runs in the child, single-threaded, inside fork(): drop every trace of the parent's
  // threads, connections and calls. Locks the parent held may be held forever: never take one;
  // leak what cannot be freed without it.
  virtual void forkedChild() noexcept = 0;

protected:
  ~ForkAware() = default;
};

class ForkRegistry {
public:
  static ForkRegistry& instance() {
    static ForkRegistry* registry = [] {
      auto* r = new ForkRegistry(); // never destroyed: a fork may run during static destruction
      pthread_atfork(&prepare, &parent, &child);
      return r;
    }();
    return *registry;
  }

  void add(ForkAware* object) {
    std::lock_guard<std::mutex> lock(mutex_);
    objects_.push_back(object);
  }

  void remove(ForkAware* object) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    objects_.erase(std::remove(objects_.begin(), objects_.end(), object), objects_.end());
  }

  // Registers object for its lifetime.
  class Registration {
  public:
    explicit Registration(ForkAware& object) : object_(&object) { instance().add(object_); }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration() { instance().remove(object_); }

  private:
    ForkAware* object_;
  };

private:
  ForkRegistry() = default;

  static void prepare() noexcept { instance().mutex_.lock(); }
  static void parent() noexcept { instance().mutex_.unlock(); }
  static void child() noexcept {
    ForkRegistry& r = instance();
    for (ForkAware* object : r.objects_) {
      object->forkedChild();
    }
    r.mutex_.unlock();
  }

  std::mutex mutex_;
  std::vector<ForkAware*> objects_;
};

} // namespace cacheaside::detail
