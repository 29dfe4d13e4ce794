package com.example;

import java.io.Serializable;
import java.math.BigDecimal;
import java.util.Date;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The interop POJO. Field order matters: Hessian writes the fields of a class definition in
 * declaration order, and rdubbo's Rust mirror of this class must use the same order.
 */
public class User implements Serializable {
    private static final long serialVersionUID = 1L;

    private String name;
    private int age;
    private Date born;
    private BigDecimal balance;
    private List<String> tags;
    private Address address;
    private Level level;
    private Map<String, Integer> scores;

    public User() {
    }

    public String getName() {
        return name;
    }

    public void setName(String name) {
        this.name = name;
    }

    public int getAge() {
        return age;
    }

    public void setAge(int age) {
        this.age = age;
    }

    public Date getBorn() {
        return born;
    }

    public void setBorn(Date born) {
        this.born = born;
    }

    public BigDecimal getBalance() {
        return balance;
    }

    public void setBalance(BigDecimal balance) {
        this.balance = balance;
    }

    public List<String> getTags() {
        return tags;
    }

    public void setTags(List<String> tags) {
        this.tags = tags;
    }

    public Address getAddress() {
        return address;
    }

    public void setAddress(Address address) {
        this.address = address;
    }

    public Level getLevel() {
        return level;
    }

    public void setLevel(Level level) {
        this.level = level;
    }

    public Map<String, Integer> getScores() {
        return scores;
    }

    public void setScores(Map<String, Integer> scores) {
        this.scores = scores;
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (!(o instanceof User)) {
            return false;
        }
        User u = (User) o;
        return age == u.age
                && Objects.equals(name, u.name)
                && Objects.equals(born, u.born)
                && Objects.equals(balance, u.balance)
                && Objects.equals(tags, u.tags)
                && Objects.equals(address, u.address)
                && level == u.level
                && Objects.equals(scores, u.scores);
    }

    @Override
    public int hashCode() {
        return Objects.hash(name, age, born, balance, tags, address, level, scores);
    }

    @Override
    public String toString() {
        return "User{name=" + name + ", age=" + age + ", born="
                + (born == null ? null : born.getTime()) + ", balance=" + balance + ", tags=" + tags
                + ", address=" + address + ", level=" + level + ", scores=" + scores + "}";
    }
}
