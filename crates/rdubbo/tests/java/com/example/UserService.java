package com.example;

import java.util.List;
import java.util.Map;

/** The interop service; see JavaProvider for the reference behaviour of every method. */
public interface UserService {
    /** id &lt; 0: throws UserNotFoundException("no user " + id); else {@link Samples#user(int)}. */
    User getUser(Long id) throws UserNotFoundException;

    /** (long) u.getName().length() * 1000 + u.getAge(). */
    Long createUser(User u);

    /** Returns u. */
    User echoUser(User u);

    /** n users named "user" + i with age i, i = 0..n-1. */
    List<User> listUsers(int n);

    /** x + 1 (descriptor J). */
    long inc(long x);

    /** x == null ? -1 : x + 2 (descriptor Ljava/lang/Long;). */
    Long inc(Long x);

    /** Returns o. */
    Object echo(Object o);

    /** The call attachment "caller"; sets the response attachment "served-by". */
    String whoami();

    /** name -&gt; user, in list order (LinkedHashMap). */
    Map<String, User> byName(List<User> users);

    /** u.getLevel(). */
    Level levelOf(User u);
}
